//! The daemon as users run it: the real binary as a child process, systemd readiness on a
//! Unix datagram socket, real signals, file watching, and SIGKILL at many moments.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certkeeper::crypto::{CertFacts, key_spki};
use certkeeper::sandbox::SandboxConfig;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use crate::common::{TestEnv, path_str, serial_of, text};

/// A running `certkeeper run` with its notifications and log.
struct Daemon {
    child: tokio::process::Child,
    notes: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    async fn start(env: &TestEnv) -> Self {
        let socket_path = env.path("notify.sock");
        let _ = std::fs::remove_file(&socket_path);
        let socket = tokio::net::UnixDatagram::bind(&socket_path).expect("notify socket");
        let notes = Arc::new(Mutex::new(Vec::new()));
        let sink = notes.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                sink.lock()
                    .expect("notes")
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
            .args(["-c", path_str(&env.path("certkeeper.toml")), "run"])
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000")
            .env("CERTKEEPER_LOG", "info")
            .env_remove("CERTKEEPER_API_KEY")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("daemon starts");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("log")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child, notes, log }
    }

    fn signal(&self, sig: Signal) {
        let pid = self.child.id().expect("running") as i32;
        kill(Pid::from_raw(pid), sig).expect("signal");
    }

    fn notes(&self) -> String {
        self.notes.lock().expect("notes").join("\n")
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// Waits (up to 5 s) for `line` in the log: the line may be written a moment after the
    /// effect the test saw on disk.
    async fn assert_logged(&self, line: &str) {
        let started = Instant::now();
        while !self.log().contains(line) {
            let log = self.log();
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "no {line:?} in the log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn serial(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| CertFacts::from_pem(&t).ok())
        .map(|f| f.serial)
}

/// READY after the config is loaded; SIGHUP with a bad file keeps the old config, with a good
/// one applies the diff; SIGUSR1 re-checks what changed unseen; a file removed by a person is
/// noticed within seconds; SIGTERM stops cleanly with STOPPING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_readiness_and_file_watch() {
    let env = TestEnv::new().await;
    let daemon_cfg = "check_interval = \"1h\"";
    env.write_config(daemon_cfg, &env.cert("www", ""));
    let mut d = Daemon::start(&env).await;
    let www = env.path("certs/www/cert.pem");
    eventually("READY=1", Duration::from_secs(10), || {
        d.notes().contains("READY=1")
    })
    .await;
    assert!(d.notes().contains("STATUS=1 certificates"), "{}", d.notes());
    eventually("WATCHDOG=1", Duration::from_secs(5), || {
        d.notes().contains("WATCHDOG=1")
    })
    .await;

    eventually("first issuance", Duration::from_secs(15), || {
        serial(&www).is_some()
    })
    .await;
    let first = serial(&www).expect("serial");

    // SIGHUP with a broken file: logged, ignored, still running.
    std::fs::write(env.path("certkeeper.toml"), "[daemon]\nconcurrency = 0\n")
        .expect("break config");
    d.signal(Signal::SIGHUP);
    eventually("rejection logged", Duration::from_secs(10), || {
        d.log()
            .contains("the new configuration is invalid; keeping the old one")
    })
    .await;
    d.assert_logged("concurrency must be at least 1").await;
    assert!(d.child.try_wait().expect("wait").is_none(), "still running");
    // Notifications go out from their own thread, so they may trail the log line.
    eventually("RELOADING=1", Duration::from_secs(5), || {
        d.notes().contains("RELOADING=1")
    })
    .await;

    // SIGHUP with a good file adding a certificate.
    env.write_config(
        daemon_cfg,
        &format!("{}\n{}", env.cert("www", ""), env.cert("api", "")),
    );
    d.signal(Signal::SIGHUP);
    eventually("added certificate issued", Duration::from_secs(15), || {
        serial(&env.path("certs/api/cert.pem")).is_some()
    })
    .await;
    d.assert_logged("configuration reloaded added=1 changed=0 removed=0")
        .await;
    assert_eq!(
        serial(&www).as_deref(),
        Some(first.as_str()),
        "unchanged certificates are left alone"
    );

    // A change the watch cannot see (inside the state directory): SIGUSR1 finds it.
    let root = std::fs::read_to_string(env.path("root.pem")).expect("root");
    let live_cert = env.path("state/live/www/current/cert.pem");
    std::fs::remove_file(&live_cert).expect("rm");
    std::fs::write(&live_cert, root).expect("foreign cert");
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.signal(Signal::SIGUSR1);
    let root_serial = serial(&env.path("root.pem")).expect("root serial");
    eventually("renewal after SIGUSR1", Duration::from_secs(15), || {
        serial(&www).is_some_and(|s| s != first && s != root_serial)
    })
    .await;

    d.assert_logged("checking every certificate now").await;
    d.assert_logged("key_file does not hold the certificate's key")
        .await;
    let second = serial(&www).expect("serial");

    // A person removes the certificate: noticed through the file watch within seconds; the
    // live generation is intact, so the link is restored without asking CertCentral.
    let posts = env.sandbox.count("POST", "/reissue");
    std::fs::remove_file(&www).expect("rm cert");
    eventually(
        "link restored after removal",
        Duration::from_secs(15),
        || serial(&www).as_deref() == Some(second.as_str()),
    )
    .await;
    d.assert_logged("files changed on disk; checking the certificate cert=www")
        .await;
    d.assert_logged(
        "the live certificate is intact: restored its links, no new certificate needed",
    )
    .await;
    assert_eq!(
        env.sandbox.count("POST", "/reissue"),
        posts,
        "no request for a deleted link"
    );
    env.assert_installed_set_valid("www");

    // Another tool moves a foreign certificate over api's, in a folder that did not exist when
    // the configuration was reloaded (watched since api's first install): api's own link is
    // put back.
    let api = env.path("certs/api/cert.pem");
    let api_first = serial(&api).expect("api serial");
    let staged = env.path("certs/api/incoming.pem");
    std::fs::copy(env.path("root.pem"), &staged).expect("stage");
    std::fs::rename(&staged, &api).expect("mv over cert_file");
    eventually(
        "link restored after replacement",
        Duration::from_secs(15),
        || {
            std::fs::symlink_metadata(&api).is_ok_and(|m| m.file_type().is_symlink())
                && serial(&api).as_deref() == Some(api_first.as_str())
        },
    )
    .await;
    d.assert_logged("files changed on disk; checking the certificate cert=api")
        .await;
    assert_eq!(
        env.sandbox.count("POST", "/reissue"),
        posts,
        "no request for a replaced link"
    );
    env.assert_installed_set_valid("api");

    // SIGTERM: a clean, quick stop.
    let started = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(10), d.child.wait())
        .await
        .expect("stops within 10 s")
        .expect("status");
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    eventually("STOPPING=1", Duration::from_secs(5), || {
        d.notes().contains("STOPPING=1")
    })
    .await;
}

/// Crash safety: `renew --force` is killed with SIGKILL at many moments of a renewal (the
/// sandbox delays issuance so that every step is hit), then `renew` resumes it. Throughout,
/// a reader of key_file and cert_file always sees a matching, complete set; each accepted
/// reissue leads to exactly one installed certificate; no request is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_moment_loses_nothing() {
    let env = TestEnv::with(SandboxConfig {
        issuance_delay: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", ""));

    assert!(env.spawn(&["renew"]).wait().await.expect("first").success());

    // The reader: key and certificate must always match and always parse.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (key_path, cert_path) = (
        env.path("certs/www/key.pem"),
        env.path("certs/www/cert.pem"),
    );
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || sample(&key_path, &cert_path, &stop))
    };

    let mut serials = vec![serial_of(&env.path("certs/www/cert.pem"))];
    for i in 0..16u64 {
        let posts_before = env.sandbox.count("POST", "/reissue");
        assert!(
            env.killed_then_resumed(Duration::from_millis(i * 45)).await,
            "iteration {i}: the resumed renewal failed"
        );
        let posts = env.sandbox.count("POST", "/reissue") - posts_before;
        let now = serial_of(&env.path("certs/www/cert.pem"));
        let journal =
            std::fs::read_to_string(env.path("state/certs/www/journal.json")).expect("journal");
        assert!(
            journal.contains("\"step\": \"idle\""),
            "iteration {i}: {journal}"
        );
        match posts {
            0 => assert_eq!(
                &now,
                serials.last().expect("serial"),
                "iteration {i}: changed without a request"
            ),
            1 => {
                assert!(
                    !serials.contains(&now),
                    "iteration {i}: an accepted reissue was not installed"
                );
                serials.push(now);
            }
            n => panic!("iteration {i}: {n} reissues sent for one renewal"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = reader.join().expect("reader");
    assert!(samples > 100, "the reader sampled {samples} times");
    assert!(
        serials.len() >= 8,
        "most kills should land after the request: {} renewals",
        serials.len() - 1
    );
    env.assert_installed_set_valid("www");
}

/// Reads key and certificate in a loop; panics on a half-written file or a mismatch.
fn sample(key: &PathBuf, cert: &PathBuf, stop: &std::sync::atomic::AtomicBool) -> usize {
    let mut samples = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let k1 = std::fs::read_to_string(key).expect("key_file always exists");
        let c = std::fs::read_to_string(cert).expect("cert_file always exists");
        let k2 = std::fs::read_to_string(key).expect("key_file always exists");
        let spki = key_spki(&k1).expect("key_file is never half-written");
        let facts = CertFacts::from_pem(&c).expect("cert_file is never half-written");
        if k1 == k2 {
            // No switch happened between the reads: they come from one generation.
            assert_eq!(spki, facts.spki, "key_file and cert_file do not match");
            samples += 1;
        }
    }
    samples
}

/// A certificate that keeps failing never delays the others, with `concurrency = 1`; logs in
/// JSON carry the certificate name and order id as fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_isolated_and_logs_are_structured() {
    let env = TestEnv::new().await;
    let bad = env
        .cert("bad", "")
        .replace("order_id = 1001", "order_id = 4242");
    let port = crate::servers::free_port();
    env.write_config(
        &format!("concurrency = 1\nmetrics_listen = \"127.0.0.1:{port}\""),
        &format!("{bad}\n{}\n{}", env.cert("one", ""), env.cert("two", "")),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args([
            "-c",
            path_str(&env.path("certkeeper.toml")),
            "--log-format",
            "json",
            "run",
        ])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("daemon");
    eventually("both good certificates", Duration::from_secs(20), || {
        serial(&env.path("certs/one/cert.pem")).is_some()
            && serial(&env.path("certs/two/cert.pem")).is_some()
    })
    .await;
    // Prometheus metrics, scraped from the running daemon.
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let one = std::fs::read_to_string(env.path("certs/one/cert.pem")).expect("one");
    let not_after = CertFacts::from_pem(&one).expect("cert").not_after;
    for line in [
        format!("certkeeper_certificate_expiration_timestamp_seconds{{name=\"one\",order_id=\"1001\",issuer=\"certcentral\"}} {not_after}"),
        "certkeeper_certificate_ready_status{name=\"one\",order_id=\"1001\",issuer=\"certcentral\",condition=\"True\"} 1".to_owned(),
        "certkeeper_certificate_ready_status{name=\"bad\",order_id=\"4242\",issuer=\"certcentral\",condition=\"False\"} 1".to_owned(),
        "certkeeper_renewal_failures_total{name=\"one\",order_id=\"1001\",issuer=\"certcentral\"} 0".to_owned(),
        "certkeeper_certcentral_requests_total{endpoint=\"GET /order/certificate/{id}\",status=\"404\"}".to_owned(),
        "certkeeper_certcentral_requests_total{endpoint=\"POST /order/certificate/{id}/reissue\",status=\"201\"} 2".to_owned(),
        "certkeeper_pending_requests 0".to_owned(),
        "certkeeper_order_expiration_timestamp_seconds{name=\"two\",order_id=\"1001\",issuer=\"certcentral\"}".to_owned(),
        "# TYPE certkeeper_renewal_failures_total counter".to_owned(),
    ] {
        assert!(metrics.contains(&line), "missing {line:?} in\n{metrics}");
    }
    assert!(
        metrics.lines().any(
            |l| l.starts_with("certkeeper_renewal_failures_total{name=\"bad\"")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l.starts_with("certkeeper_certificate_renewal_timestamp_seconds{name=\"two\"")), "{metrics}");
    kill(
        Pid::from_raw(child.id().expect("pid") as i32),
        Signal::SIGTERM,
    )
    .expect("term");
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .await
        .expect("log");
    assert!(child.wait().await.expect("exit").success());
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failed = lines
        .iter()
        .find(|l| l["cert"] == "bad" && l["level"] == "ERROR")
        .expect("the failure is logged");
    assert_eq!(failed["order_id"], 4242);
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("not_found|order")),
        "{failed}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["cert"] == "two" && l["message"] == "renewal complete"),
        "{log}"
    );
    let status: serde_json::Value = serde_json::from_slice(
        &std::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
            .args([
                "-c",
                path_str(&env.path("certkeeper.toml")),
                "status",
                "--json",
            ])
            .output()
            .expect("status")
            .stdout,
    )
    .expect("json");
    let states: Vec<&str> = status
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["state"].as_str())
        .collect();
    assert_eq!(states, ["failed", "ok", "ok"]);
}

/// A notification socket nobody reads (its queue fills up) never blocks the daemon: it still
/// renews everything and stops on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_notify_socket_never_blocks() {
    let env = TestEnv::new().await;
    let certs: Vec<String> = (0..24).map(|i| env.cert(&format!("c{i}"), "")).collect();
    env.write_config("", &certs.join("\n"));
    let socket_path = env.path("deaf.sock");
    let _deaf = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["-c", path_str(&env.path("certkeeper.toml")), "run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("daemon");
    eventually("every certificate", Duration::from_secs(30), || {
        (0..24).all(|i| env.path(&format!("certs/c{i}/cert.pem")).exists())
    })
    .await;
    kill(
        Pid::from_raw(child.id().expect("pid") as i32),
        Signal::SIGTERM,
    )
    .expect("term");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops within 10 s")
        .expect("status");
    assert!(status.success());
}

/// Hostile local files and a connection flood never stall the daemon: a FIFO at one
/// certificate's `cert_file` and a link to `/dev/zero` at another's are refused with a clear
/// error while the third certificate is issued; `status` and `check` answer; hundreds of idle
/// connections to the metrics port cost the daemon at most its connection cap in file
/// descriptors, and a scrape gets through; SIGTERM still stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_and_idle_connections_never_stall_it() {
    let env = TestEnv::new().await;
    let port = crate::servers::free_port();
    std::fs::create_dir_all(env.path("certs/fifo")).expect("dir");
    nix::unistd::mkfifo(
        &env.path("certs/fifo/cert.pem"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    std::fs::create_dir_all(env.path("certs/zero")).expect("dir");
    std::os::unix::fs::symlink("/dev/zero", env.path("certs/zero/cert.pem")).expect("symlink");
    env.write_config(
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
        &format!(
            "{}\n{}\n{}",
            env.cert("fifo", ""),
            env.cert("zero", ""),
            env.cert("www", "")
        ),
    );
    let d = Daemon::start(&env).await;
    eventually("www issued", Duration::from_secs(20), || {
        serial(&env.path("certs/www/cert.pem")).is_some()
    })
    .await;
    // `check` refuses both at once; `status` shows what the daemon recorded when each
    // renewal was refused before anything was asked of the CA (polled: on a busy machine the
    // daemon may not have reached them yet).
    let fifo_refused = "cert.pem (certs/fifo/cert.pem) is a FIFO: remove it";
    let zero_refused = "cert.pem (certs/zero/cert.pem) is a symlink to a device: remove it";
    let relative = |said: String| said.replace(&format!("{}/", env.dir.path().display()), "");
    let started = Instant::now();
    loop {
        let out = tokio::time::timeout(Duration::from_secs(10), env.certkeeper(&["status"]))
            .await
            .expect("status hangs");
        let said = relative(text(&out));
        if said.contains(fifo_refused) && said.contains(zero_refused) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "status never showed both refusals: {said}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(10), env.certkeeper(&["check"]))
        .await
        .expect("check hangs");
    let said = relative(text(&out));
    assert!(
        said.contains(fifo_refused) && said.contains(zero_refused),
        "check: {said}"
    );
    assert_eq!(
        env.sandbox.count("POST", "/reissue"),
        1,
        "only www was requested: the FIFO and the device cost no CA request"
    );

    // Idle connections: accepted and closed beyond the cap, so the daemon's descriptors stay
    // bounded; its event loop keeps running (watchdog pings continue).
    let pid = d.child.id().expect("pid");
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    let before = fds();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    let pings = d.notes().matches("WATCHDOG=1").count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = fds();
    assert!(
        // Beyond the cap: the one connection being accepted and closed, and the file a
        // certificate check may have open at that instant.
        during <= before + certkeeper::metrics::MAX_CONNECTIONS + 4,
        "{before} descriptors before, {during} with 300 idle connections"
    );
    assert!(
        d.notes().matches("WATCHDOG=1").count() > pings,
        "the event loop runs"
    );
    let scraped = {
        let started = Instant::now();
        loop {
            let got = reqwest::Client::new()
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(r) = got {
                break r.text().await.expect("body");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no scrape got through"
            );
        }
    };
    assert!(
        scraped.contains("certkeeper_certificate_ready_status{name=\"www\""),
        "{scraped}"
    );
    drop(idle);

    let mut d = d;
    d.signal(Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(10), d.child.wait())
        .await
        .expect("stops on SIGTERM")
        .expect("status");
    assert!(status.success(), "{status}");
}

/// A local user holding twice as many idle connections as the metrics port serves, and
/// opening a new one whenever one is dropped, does not starve a scraper: the oldest
/// connection that has sent no request is dropped for the new one, so every scrape gets
/// through on its first try. (Before, the holders kept every slot: 1 scrape in 20 got in.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_starve_scrapes() {
    let env = TestEnv::new().await;
    let port = crate::servers::free_port();
    env.write_config(
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
        &env.cert("www", ""),
    );
    let _d = Daemon::start(&env).await;
    eventually("metrics served", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    // Each holder connects, sends nothing, and connects again a second after it is dropped
    // (a scraper must be able to send its request within that second).
    let reopened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let holders: Vec<_> = (0..2 * certkeeper::metrics::MAX_CONNECTIONS)
        .map(|_| {
            let reopened = reopened.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(mut idle) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = idle.read(&mut [0u8; 64]).await;
                        reopened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        })
        .collect();
    eventually("the holders fill the port", Duration::from_secs(20), || {
        reopened.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    let mut failed = Vec::new();
    for i in 0..20 {
        let got = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match got {
            Ok(r) if r.status().is_success() => {}
            other => failed.push(format!("scrape {i}: {other:?}")),
        }
    }
    for h in holders {
        h.abort();
    }
    assert!(failed.is_empty(), "{failed:?}");
}

/// A certificate removed from the configuration while its validation is pending keeps its
/// request and record through its grace (a rename can still carry them over), and is abandoned
/// once the grace is over: the request canceled at CertCentral, the record taken down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_certificate_is_abandoned_after_its_grace() {
    use crate::dcv::{assert_given_up, cancels, stuck_in_validation};
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = crate::servers::Bind::start(servers.path().join("bind"));
    let elsewhere = crate::servers::Bind::start(servers.path().join("elsewhere"));
    let env = stuck_in_validation(&bind, &elsewhere).await;
    let other = env
        .cert("other", "")
        .replace("order_id = 1001", "order_id = 1002");
    env.write_config("abandon_unconfigured_after = \"1h\"", &other);
    let d = Daemon::start(&env).await;
    d.assert_logged(
        "\"www\" is no longer configured but its state holds a renewal (step validating",
    )
    .await;
    d.assert_logged("unless it is configured again, it is abandoned then")
        .await;
    assert_eq!(
        bind.dig("example.test", "TXT").len(),
        2,
        "kept in the grace"
    );
    assert_eq!(cancels(&env), 0, "kept in the grace");

    env.write_config("abandon_unconfigured_after = \"0s\"", &other);
    d.signal(Signal::SIGHUP);
    eventually("the record taken down", Duration::from_secs(60), || {
        bind.dig("example.test", "TXT") == ["v=spf1 -all"]
    })
    .await;
    d.assert_logged("abandoned the renewal of a certificate no longer configured")
        .await;
    assert_given_up(&env);
}
