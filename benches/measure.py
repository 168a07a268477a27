#!/usr/bin/env python3
"""Measurement helpers for benches/run.sh (standard library only).

  measure.py time RUNS -- CMD...          median / min wall time of CMD over RUNS runs (ms)
  measure.py daemon IDLE_SECONDS -- CMD...
      starts CMD (certkeeper run) with NOTIFY_SOCKET, reports start→READY=1 (ms), the CPU ticks
      (utime+stime, in clock ticks) of the first 5 s (start-up and the first look at every
      certificate), then CPU ticks and RSS over IDLE_SECONDS, then stops it.
"""
import os, socket, statistics, subprocess, sys, tempfile, threading, time

def run_time(runs, cmd):
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples.append((time.perf_counter() - t) * 1000)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.decode()[-500:]}")
    print(f"median_ms={statistics.median(samples):.1f} min_ms={min(samples):.1f} runs={runs}")

def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1

def daemon(idle, cmd):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=path, CERTKEEPER_LOG="warn")
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready_ms = None
    while ready_ms is None:
        msg = sock.recv(4096).decode()
        if "READY=1" in msg:
            ready_ms = (time.perf_counter() - t) * 1000
    # Keep reading, as systemd does.
    sock.settimeout(None)
    threading.Thread(target=lambda: [sock.recv(4096) for _ in iter(int, 1)], daemon=True).start()
    time.sleep(5)  # the first look at every certificate happens right after READY
    before, rss_start = ticks(p.pid), rss_kib(p.pid)
    time.sleep(idle)
    after, rss_end = ticks(p.pid), rss_kib(p.pid)
    p.terminate()
    p.wait(timeout=15)
    print(f"ready_ms={ready_ms:.1f} first_5s_cpu_ticks={before} "
          f"idle_cpu_ticks={after - before} idle_seconds={idle} "
          f"rss_kib_after_settle={rss_start} rss_kib_end={rss_end} clk_tck={os.sysconf('SC_CLK_TCK')}")

if __name__ == "__main__":
    mode, n, sep, *cmd = sys.argv[1:]
    assert sep == "--"
    {"time": run_time, "daemon": daemon}[mode](int(n), cmd)
