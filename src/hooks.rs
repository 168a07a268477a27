//! Runs `deploy_check` and `reload` commands: an argument vector, never a shell.
//!
//! The environment is cleared except `PATH` and the `CERTKEEPER_*` variables the caller
//! passes (never the API key); stdin is `/dev/null`; the command runs in its own process group,
//! and on timeout the whole group is killed. Output is kept, bounded, for the log and `status`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How much of a hook's output is kept (the tail).
const OUTPUT_LIMIT: usize = 4096;
/// How long to wait for a hook's output after it exited (a child it left behind may keep the
/// pipes open).
const READ_GRACE: Duration = Duration::from_secs(1);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} exited with {status}{}", tail(.output))]
    Failed {
        program: String,
        status: String,
        output: String,
    },
    #[error("{program} did not finish within {} and was killed{}", humantime::format_duration(*.timeout), tail(.output))]
    TimedOut {
        program: String,
        timeout: Duration,
        output: String,
    },
}

fn tail(output: &str) -> String {
    let t = output.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("; output: {t}")
    }
}

/// A successful run's output.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub output: String,
}

/// Runs `argv` with exactly `env` (plus `PATH`), killing its process group after `timeout`.
pub async fn run(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Outcome, Error> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&program);
    cmd.args(&argv[1.min(argv.len())..])
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id();
    // Both pipes are read at once, in one task that is aborted if it outlives the grace.
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let mut readers =
        tokio::spawn(async move { tokio::join!(read_bounded(stdout), read_bounded(stderr)) });
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    if waited.is_err() {
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait().await;
    }
    // A daemon forked by the hook may hold the pipes open: wait a moment, then abort the
    // readers, which closes our ends of the pipes.
    let (stdout, stderr) = match tokio::time::timeout(READ_GRACE, &mut readers).await {
        Ok(Ok(both)) => both,
        _ => {
            readers.abort();
            (String::new(), String::new())
        }
    };
    let output = bounded_tail(&format!("{stdout}{stderr}"));
    match waited {
        Err(_) => Err(Error::TimedOut {
            program,
            timeout,
            output,
        }),
        Ok(Err(source)) => Err(Error::Spawn { program, source }),
        Ok(Ok(status)) if status.success() => Ok(Outcome { output }),
        Ok(Ok(status)) => Err(Error::Failed {
            program,
            status: status.to_string(),
            output,
        }),
    }
}

async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 4 * OUTPUT_LIMIT {
            buf.drain(..buf.len() - OUTPUT_LIMIT);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn bounded_tail(s: &str) -> String {
    if s.len() <= OUTPUT_LIMIT {
        return s.to_owned();
    }
    let mut start = s.len() - OUTPUT_LIMIT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn env_is_cleared_and_no_shell() {
        // SAFETY of the assertion: a secret in our environment must not reach the hook.
        let out = run(
            &argv(&["env"]),
            &[("CERTKEEPER_NAME".into(), "www".into())],
            Duration::from_secs(10),
        )
        .await
        .expect("env runs");
        let mut vars: Vec<&str> = out
            .output
            .lines()
            .map(|l| l.split('=').next().unwrap_or(""))
            .collect();
        vars.sort_unstable();
        assert_eq!(vars, ["CERTKEEPER_NAME", "PATH"]);
        let out = run(
            &argv(&["echo", "$HOME", ";", "true"]),
            &[],
            Duration::from_secs(10),
        )
        .await
        .expect("echo");
        assert_eq!(out.output.trim(), "$HOME ; true");
    }

    #[tokio::test]
    async fn failure_and_timeout() {
        let e = run(
            &argv(&["sh", "-c", "echo broken >&2; exit 3"]),
            &[],
            Duration::from_secs(10),
        )
        .await;
        assert!(
            matches!(&e, Err(Error::Failed { output, .. }) if output.contains("broken")),
            "{e:?}"
        );
        let started = std::time::Instant::now();
        let e = run(
            &argv(&["sh", "-c", "sleep 30 & sleep 30"]),
            &[],
            Duration::from_millis(300),
        )
        .await;
        assert!(matches!(e, Err(Error::TimedOut { .. })), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let e = run(&argv(&["/nonexistent/hook"]), &[], Duration::from_secs(1)).await;
        assert!(matches!(e, Err(Error::Spawn { .. })), "{e:?}");
    }

    /// A hook whose child keeps stdout open leaks neither descriptors nor tasks: the readers
    /// are aborted after the grace period, and the run returns.
    #[tokio::test]
    async fn a_child_holding_the_pipes_leaks_nothing() {
        let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        let before = open_fds();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            run(
                &argv(&["sh", "-c", "sleep 30 & echo started"]),
                &[],
                Duration::from_secs(10),
            )
            .await
            .expect("the hook itself succeeds");
            assert!(started.elapsed() < Duration::from_secs(5));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            open_fds() <= before + 1,
            "descriptors leaked: {before} before, {} after",
            open_fds()
        );
    }
}
