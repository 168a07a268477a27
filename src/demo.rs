//! `certkeeper demo`: the one-command trial. Starts the sandbox on loopback with a DV order
//! (no validation is reused: every issuance needs domain validation), a small web server for
//! the `http_root` the sandbox fetches the validation file from, writes a config for a
//! short-lived certificate into a fresh folder, and runs the daemon so the user watches real
//! renewals happen, each one validated; Ctrl-C stops it cleanly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::renewal::{DriveOptions, Engine, Outcome};
use crate::sandbox::{Reach, Sandbox, SandboxConfig};
use crate::{daemon, model::fmt_time};

/// The demo's order in the sandbox.
const ORDER_ID: u64 = 1001;

/// Runs the demo in `dir` with certificates valid for `validity`.
pub async fn run(dir: &Path, validity: Duration, once: bool) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(dir).context("cannot resolve the demo folder")?;
    prepare_folder(&dir)?;
    let http_root = dir.join("www");
    let web = web_server(http_root.clone()).await?;
    let mut order: crate::sandbox::OrderSpec =
        format!("{ORDER_ID}:demo.example.test,www.demo.example.test")
            .parse()
            .map_err(anyhow::Error::msg)?;
    order.dv = true;
    let sandbox = Sandbox::start(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            orders: vec![order],
            validity,
            // Every name is served by the demo's web server.
            reach: Reach {
                resolve: vec![("*".into(), web)],
                dns_server: None,
            },
            ..SandboxConfig::default()
        },
    )
    .await?;
    let root = dir.join("sandbox-root.pem");
    std::fs::write(&root, sandbox.root_pem())?;
    crate::safefs::Dir::open(&dir, &crate::safefs::Trust::default())?.create_file(
        "api-key",
        b"demo-key\n",
        &crate::safefs::Spec::mode(0o600),
    )?;
    let config_path = dir.join("certkeeper.toml");
    std::fs::write(&config_path, config_text(&dir, &sandbox.url()))?;
    let config = Config::load(&config_path)?;

    println!("certkeeper demo");
    println!("  sandbox CertCentral API  {}", sandbox.url());
    println!("  configuration            {}", config_path.display());
    println!("  certificates             {}", dir.join("certs").display());
    println!(
        "  web server (http_root)   http://{web}/ serving {}",
        http_root.display()
    );
    println!("  sandbox root CA          {}", root.display());
    println!(
        "  lifetime of certificates {}",
        humantime::format_duration(validity)
    );
    println!();

    if once {
        let engine = Engine::from_config(&config)?;
        let cert = &config.certificates[0];
        let outcome = crate::cli::renew_one(
            &engine,
            cert,
            DriveOptions::default(),
            Duration::from_secs(60),
        )
        .await?;
        match outcome {
            Outcome::Renewed { serial, not_after } => {
                println!(
                    "renewed {}: serial {serial}, valid until {}",
                    cert.name,
                    fmt_time(not_after)
                );
                print_inspect(&dir);
                Ok(ExitCode::SUCCESS)
            }
            other => {
                println!("the renewal did not complete: {other:?}");
                Ok(ExitCode::FAILURE)
            }
        }
    } else {
        print_inspect(&dir);
        println!("The daemon now issues the certificate and renews it each time a third of its");
        println!("lifetime is left. The order is DV, so every renewal validates the names: the");
        println!("daemon publishes the random value under http_root, asks the sandbox to check,");
        println!("and removes the file once the certificate is issued. Watch the log; press");
        println!("Ctrl-C to stop.\n");
        daemon::run(&config_path, daemon::process_signals()).await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// The file that marks a folder as made by the demo.
const MARKER: &str = ".certkeeper-demo";

/// What the demo writes into its folder, and all that it ever clears.
const OWNED: [&str; 7] = [
    MARKER,
    "certkeeper.toml",
    "api-key",
    "sandbox-root.pem",
    "certs",
    "www",
    "state",
];

/// Makes `dir` a fresh demo folder: created if missing, or an empty folder. A folder an
/// earlier demo made (it holds the marker) loses only what the demo wrote there; anything
/// added since (`.git`, notes) is kept. Any other folder that is not empty is refused.
fn prepare_folder(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).is_file() {
            anyhow::bail!(
                "{} exists and was not made by `certkeeper demo`; refusing to clear it. Choose another folder with --dir",
                dir.display()
            );
        }
        for name in OWNED {
            let path = dir.join(name);
            let removed = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            removed.with_context(|| format!("cannot clear {}", path.display()))?;
        }
    }
    std::fs::create_dir_all(dir.join("certs"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `certkeeper demo`: its next run replaces what it wrote here, and keeps the rest\n",
    )?;
    Ok(())
}

/// The web server the sandbox's validation fetches from: `GET
/// /.well-known/pki-validation/NAME` answers the file of that name under `http_root` (as
/// nginx would with `root` set to it), anything else 404. Returns where it listens.
async fn web_server(http_root: PathBuf) -> anyhow::Result<std::net::SocketAddr> {
    use axum::extract::Path as UrlPath;
    use axum::http::StatusCode;
    std::fs::create_dir_all(&http_root)
        .with_context(|| format!("cannot create {}", http_root.display()))?;
    let app = axum::Router::new().route(
        "/.well-known/pki-validation/{file}",
        axum::routing::get(move |UrlPath(file): UrlPath<String>| {
            let dir = http_root.join(".well-known/pki-validation");
            async move {
                if file.contains('/') || file.starts_with('.') {
                    return Err(StatusCode::NOT_FOUND);
                }
                crate::safefs::read(&dir.join(file), 4096).map_err(|_| StatusCode::NOT_FOUND)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn print_inspect(dir: &Path) {
    let p = |f: &str| -> PathBuf { dir.join("certs").join(f) };
    println!("Inspect the files with openssl:");
    println!(
        "  openssl x509 -in {} -noout -subject -serial -dates -ext subjectAltName",
        p("cert.pem").display()
    );
    println!(
        "  openssl verify -CAfile {} -untrusted {} {}",
        dir.join("sandbox-root.pem").display(),
        p("chain.pem").display(),
        p("cert.pem").display()
    );
    println!(
        "  openssl pkey -in {} -pubout | openssl sha256   # equals the next line",
        p("key.pem").display()
    );
    println!(
        "  openssl x509 -in {} -noout -pubkey | openssl sha256",
        p("cert.pem").display()
    );
    println!(
        "  cargo run --release -- -c {} status",
        dir.join("certkeeper.toml").display()
    );
    println!();
}

fn config_text(dir: &Path, url: &str) -> String {
    format!(
        r#"# Written by `certkeeper demo`: a sandbox order and one short-lived certificate.
[certcentral]
url = "{url}"
api_key_file = "api-key"

[daemon]
state_dir = "state"
jitter = "5s"
poll_interval = "2s"
poll_max = "30s"

[[certificate]]
name = "demo"
order_id = {ORDER_ID}
key_type = "ecdsa-p256"
skip_approval = true
cert_file = "certs/cert.pem"
key_file = "certs/key.pem"
chain_file = "certs/chain.pem"
fullchain_file = "certs/fullchain.pem"
deploy_check = ["test", "-s", "{cert}"]
# A DV order validates every name at every renewal: the random value is published at
# www/.well-known/pki-validation/fileauth.txt, which the demo's web server serves.
dcv_method = "http-token"
http_root = "www"
"#,
        cert = dir.join("certs/cert.pem").display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `demo --dir .` once removed a `.git`: only a folder the demo made is ever cleared.
    #[test]
    fn only_a_demo_folder_is_cleared() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mine = tmp.path().join("project");
        std::fs::create_dir_all(mine.join(".git")).expect("mkdir");
        let e = prepare_folder(&mine).expect_err("refused");
        assert!(
            e.to_string().contains("was not made by `certkeeper demo`"),
            "{e}"
        );
        assert!(mine.join(".git").is_dir(), "nothing deleted");

        let demo = tmp.path().join("demo");
        prepare_folder(&demo).expect("a new folder");
        std::fs::write(demo.join("certs/old.pem"), "x").expect("write");
        prepare_folder(&demo).expect("an earlier demo's folder is cleared");
        assert!(!demo.join("certs/old.pem").exists());
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        prepare_folder(&empty).expect("an empty folder is fine");

        // An empty folder the demo marked, where the user then started a project: the next
        // run replaces only the demo's own files.
        std::fs::write(empty.join("certkeeper.toml"), "# the demo's").expect("write");
        std::fs::create_dir_all(empty.join(".git/objects")).expect("mkdir");
        std::fs::write(empty.join("notes.txt"), "mine").expect("write");
        prepare_folder(&empty).expect("the demo's folder again");
        assert!(empty.join(".git/objects").is_dir(), ".git kept");
        assert_eq!(
            std::fs::read_to_string(empty.join("notes.txt"))
                .ok()
                .as_deref(),
            Some("mine")
        );
        assert!(
            !empty.join("certkeeper.toml").exists(),
            "the demo's config cleared"
        );
        assert!(empty.join("certs").is_dir() && empty.join(MARKER).is_file());
    }
}
