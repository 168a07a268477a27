//! The test environment: a temporary folder, the sandbox on 127.0.0.1:0, a config writer, and
//! helpers to run openssl. Everything is cleaned up on drop.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use certkeeper::renewal::{DriveOptions, Outcome};

use certkeeper::config::Config;
use certkeeper::renewal::Engine;
use certkeeper::sandbox::{Sandbox, SandboxConfig};

pub const ORDER: u64 = 1001;
pub const API_KEY: &str = "test-api-key";

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
}

impl TestEnv {
    /// A sandbox with order 1001 for `example.test` + `www.example.test`, requiring
    /// [`API_KEY`], and an API key file with mode 0600.
    pub async fn new() -> Self {
        Self::with(SandboxConfig::default()).await
    }

    pub async fn with(mut config: SandboxConfig) -> Self {
        if config.orders.is_empty() {
            config.orders.push(
                format!("{ORDER}:example.test,www.example.test")
                    .parse()
                    .expect("order"),
            );
        }
        config.api_key.get_or_insert_with(|| API_KEY.to_owned());
        let sandbox = Sandbox::start("127.0.0.1:0".parse().expect("addr"), config)
            .await
            .expect("sandbox starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let env = Self { dir, sandbox };
        env.write_key(API_KEY, 0o600);
        std::fs::write(env.path("root.pem"), env.sandbox.root_pem()).expect("root");
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write_key(&self, key: &str, mode: u32) {
        let p = self.path("api-key");
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, format!("{key}\n")).expect("key");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Writes `certkeeper.toml` with the sandbox URL, `[daemon]` lines and certificate tables.
    pub fn write_config(&self, daemon: &str, certificates: &str) -> PathBuf {
        let text = format!(
            "[certcentral]\nurl = \"{}\"\napi_key_file = \"api-key\"\n\n[daemon]\nstate_dir = \"state\"\njitter = \"0s\"\npoll_interval = \"1s\"\npoll_max = \"2s\"\n{daemon}\n\n{certificates}",
            self.sandbox.url()
        );
        let p = self.path("certkeeper.toml");
        std::fs::write(&p, text).expect("config");
        p
    }

    /// One certificate table for order 1001, files under `certs/NAME/`.
    pub fn cert(&self, name: &str, extra: &str) -> String {
        format!(
            "[[certificate]]\nname = \"{name}\"\norder_id = {ORDER}\nskip_approval = true\ncert_file = \"certs/{name}/cert.pem\"\nkey_file = \"certs/{name}/key.pem\"\nchain_file = \"certs/{name}/chain.pem\"\nfullchain_file = \"certs/{name}/fullchain.pem\"\n{extra}\n"
        )
    }

    pub fn config(&self) -> Config {
        Config::load(&self.path("certkeeper.toml")).expect("config loads")
    }

    pub fn engine(&self) -> Engine {
        Engine::from_config(&self.config()).expect("engine")
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// The sandbox's record of CSRs sent for the order (list reissues).
    pub async fn reissue_list(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!(
                "{}/order/certificate/{ORDER}/reissue",
                self.sandbox.url()
            ))
            .header("X-DC-DEVKEY", API_KEY)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json")
    }

    /// Checks an installed set with openssl: the chain verifies to the sandbox root and the
    /// key's public half equals the certificate's.
    pub fn assert_installed_set_valid(&self, name: &str) {
        let dir = self.path(&format!("certs/{name}"));
        let cert = dir.join("cert.pem");
        let out = openssl(&[
            "verify",
            "-CAfile",
            path_str(&self.path("root.pem")),
            "-untrusted",
            path_str(&dir.join("chain.pem")),
            path_str(&cert),
        ]);
        assert!(
            out.status.success(),
            "openssl verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
        let key_pub = openssl(&["pkey", "-in", path_str(&dir.join("key.pem")), "-pubout"]);
        let cert_pub = openssl(&["x509", "-in", path_str(&cert), "-noout", "-pubkey"]);
        assert!(key_pub.status.success() && cert_pub.status.success());
        assert_eq!(
            key_pub.stdout, cert_pub.stdout,
            "key and certificate public keys differ"
        );
    }
}

pub fn openssl(args: &[&str]) -> Output {
    std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (installed by .ci/run)")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The serial of a PEM certificate file, via openssl.
pub fn serial_of(path: &Path) -> String {
    let out = openssl(&["x509", "-in", path_str(path), "-noout", "-serial"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned()
}

impl TestEnv {
    /// Runs the certkeeper binary on this environment's config, without an API key from the
    /// test process's environment.
    pub async fn certkeeper(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("certkeeper runs")
    }

    /// Starts the certkeeper binary as [`Self::certkeeper`] does, quiet (warnings only, output
    /// discarded), killed when dropped: for tests that kill it on purpose.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args)
            .env("CERTKEEPER_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("certkeeper starts")
    }

    /// One drive of certificate `name` as the daemon does it (backoff honoured).
    pub async fn drive(&self, name: &str) -> Outcome {
        self.engine()
            .drive(
                self.config().certificate(name).expect("configured"),
                DriveOptions::default(),
            )
            .await
            .expect("drive")
    }

    /// `certkeeper renew NAME` in process (a person asked: no backoff), waiting up to `wait`
    /// for a pending request.
    pub async fn renew(&self, name: &str, force: bool, wait: std::time::Duration) -> Outcome {
        let config = self.config();
        certkeeper::cli::renew_one(
            &self.engine(),
            config.certificate(name).expect("configured"),
            DriveOptions {
                force,
                ignore_backoff: true,
            },
            wait,
        )
        .await
        .expect("drive")
    }

    /// `renew --force` killed after `after`, then `renew` again: whether the resumed run
    /// succeeded.
    pub async fn killed_then_resumed(&self, after: std::time::Duration) -> bool {
        let mut victim = self.spawn(&["renew", "--force"]);
        tokio::time::sleep(after).await;
        let _ = victim.start_kill();
        let _ = victim.wait().await;
        self.spawn(&["renew"])
            .wait()
            .await
            .expect("resume")
            .success()
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"));
        command
            .args(["-c", path_str(&self.path("certkeeper.toml"))])
            .args(args)
            .env_remove("CERTKEEPER_API_KEY")
            .env_remove("CREDENTIALS_DIRECTORY");
        command
    }

    /// Asserts that `name` is blocked until its config changes: another drive fails at once,
    /// with no retry time, and sends nothing to CertCentral.
    pub async fn assert_blocked(&self, name: &str) {
        let before = self.sandbox.requests().len();
        let again = self
            .engine()
            .drive(
                self.config().certificate(name).expect("configured"),
                DriveOptions::default(),
            )
            .await
            .expect("drive");
        assert!(
            matches!(
                again,
                Outcome::Failed {
                    retry_at: i64::MAX,
                    ..
                }
            ),
            "{again:?}"
        );
        assert_eq!(
            self.sandbox.requests().len(),
            before,
            "blocked until the config changes"
        );
    }
}

/// A command's stdout and stderr together.
/// Asserts that a command's output (stdout and stderr) contains `needle`; prints it otherwise.
#[track_caller]
pub fn assert_says(o: &Output, needle: &str) {
    let t = text(o);
    assert!(t.contains(needle), "no {needle:?} in the output:\n{t}");
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The sorted keys of a JSON object (empty for anything else).
pub fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}
