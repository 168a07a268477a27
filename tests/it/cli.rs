//! The binary: exit codes (0, 1, 78), messages with file:line:column, `status --json`.

use crate::common::{TestEnv, assert_says, text};

/// A broken config exits 78 and points at the line and column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_points_at_the_line() {
    let env = TestEnv::new().await;
    let cfg = env.write_config("", &env.cert("www", "key_type = \"rsa-1024\""));
    let out = env.certkeeper(&["check"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let line = std::fs::read_to_string(&cfg)
        .expect("cfg")
        .lines()
        .position(|l| l.contains("rsa-1024"))
        .expect("line")
        + 1;
    let want = format!(
        "{}:{line}:12: key_type: unknown variant `rsa-1024`",
        cfg.display()
    );
    assert_says(&out, &want);
}

/// An API key file readable by others is refused with a clear message, exit 78.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_file_permissions_are_enforced() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    env.write_key(crate::common::API_KEY, 0o644);
    for cmd in [&["check"][..], &["renew"][..]] {
        let out = env.certkeeper(cmd).await;
        assert_eq!(out.status.code(), Some(78), "{cmd:?}: {}", text(&out));
        let msg = text(&out);
        assert!(
            msg.contains(&format!(
                "API key file {} is readable by group or others (mode 0644)",
                env.path("api-key").display()
            )),
            "{msg}"
        );
    }
    assert_eq!(
        env.sandbox.requests().len(),
        0,
        "nothing was sent with a refused key"
    );
    env.write_key(crate::common::API_KEY, 0o600);
    let out = env.certkeeper(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(
        &out,
        "www (order 1001, reissue): would renew now: certificate missing",
    );
}

/// `renew` exits 0 on success, 1 on failure with CertCentral's code and message;
/// `status --json` reports the documented fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_and_status() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(&out, "www: renewed: serial");

    let out = env.certkeeper(&["status", "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let row = &rows[0];
    assert_eq!(row["name"], "www");
    assert_eq!(row["order_id"], 1001);
    assert_eq!(row["method"], "reissue");
    assert_eq!(row["state"], "ok");
    assert_eq!(row["step"], "idle");
    assert_eq!(row["key_age_days"], 0);
    assert!(row["not_after"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(row["days_left"].as_i64().is_some_and(|d| d >= 89));
    assert_eq!(row["stuck"], false);

    env.write_key("wrong", 0o600);
    let out = env.certkeeper(&["renew", "www", "--force"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_says(
        &out,
        "access_denied|access_denied_invalid_key: Access denied due to access_denied_invalid_key.",
    );
    let out = env.certkeeper(&["status"]).await;
    let t = text(&out);
    assert!(
        t.contains("failed") && t.contains("last error: CertCentral answered 403"),
        "{t}"
    );

    let out = env.certkeeper(&["renew", "nosuch"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out, "no certificate named \"nosuch\"");
}

/// `check --online` asks CertCentral, read-only: the key, each order, its end, duplicates,
/// auto-reissue. The packaged example (no certificates) passes `check` without a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online() {
    let mut no_dups: certkeeper::sandbox::OrderSpec = "2002:b.test".parse().expect("order");
    no_dups.allow_duplicates = false;
    no_dups.auto_reissue = true;
    let env = TestEnv::with(certkeeper::sandbox::SandboxConfig {
        orders: vec!["1001:example.test".parse().expect("order"), no_dups],
        ..Default::default()
    })
    .await;
    env.write_config("", &env.cert("www", ""));
    let out = env.certkeeper(&["check", "--online"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(&out, "ok: the API key is accepted");
    assert_says(&out, "ok: www (order 1001): status issued, order ends");

    let dup = env
        .cert("dup", "method = \"duplicate\"")
        .replace("order_id = 1001", "order_id = 2002");
    env.write_config("", &format!("{}\n{dup}", env.cert("www", "")));
    let out = env.certkeeper(&["check", "--online"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_says(&out, "ERROR dup (order 2002)");
    assert_says(&out, "duplicates are not allowed");
    assert_says(&out, "warning dup: auto-reissue is on");
    assert!(
        env.sandbox.requests().iter().all(|r| r.method == "GET"),
        "read-only"
    );

    env.write_key("wrong", 0o600);
    let out = env.certkeeper(&["check", "--online"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out, "access_denied|access_denied_invalid_key");

    // The packaged example has no certificates: valid without an API key.
    let packaged =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/certkeeper.toml");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["-c", crate::common::path_str(&packaged), "check"])
        .env_remove("CERTKEEPER_API_KEY")
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(&out, "no certificates configured yet");
}

/// A key file whose private scalar was corrupted (its public point intact): `status` takes the
/// fast path and trusts the written public key, `check` and the daemon's check derive the
/// public key, see the mismatch and renew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_private_key_is_found_by_check_and_renew() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let key_path = env.path("certs/www/key.pem");
    let pem_text = std::fs::read_to_string(&key_path).expect("key");
    let mut der = pem::parse(&pem_text).expect("pem").into_contents();
    // ECPrivateKey (RFC 5915): version 1, then the scalar as a 32-byte OCTET STRING.
    let at = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("scalar")
        + 10;
    der[at] ^= 0x5a;
    // Written in place (a new inode would be noticed for another reason).
    std::fs::write(&key_path, pem::encode(&pem::Pem::new("PRIVATE KEY", der))).expect("write");

    let out = env.certkeeper(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        rows[0]["state"], "ok",
        "status trusts the written public key"
    );
    let out = env.certkeeper(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(
        &out,
        "www (order 1001, reissue): would renew now: key_file does not hold the certificate's key",
    );
    let posts = env.sandbox.count("POST", "/reissue");
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(&out, "www: renewed: serial");
    assert_eq!(env.sandbox.count("POST", "/reissue"), posts + 1);
    env.assert_installed_set_valid("www");
}

/// While CertCentral keeps failing a call, `status` says so (the error, its class, the next
/// try, and what the request was waiting for) instead of "waiting for CertCentral"; the
/// one-shot `renew` gives up with exit 1 after its attempts, and `status` still shows the
/// failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_honest_while_calls_are_retried() {
    use certkeeper::sandbox::{Fault, FaultKind, SandboxConfig};
    let env = TestEnv::with(SandboxConfig {
        issuance_delay: std::time::Duration::from_secs(3600),
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", ""));
    let renew = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["-c", crate::common::path_str(&env.path("certkeeper.toml"))])
        .args(["renew", "www", "--wait", "10m"])
        .env_remove("CERTKEEPER_API_KEY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("renew starts");
    let row = || async {
        let out = env.certkeeper(&["status", "--json"]).await;
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        rows[0].clone()
    };
    let started = std::time::Instant::now();
    while row().await["step"] != "pending" {
        assert!(started.elapsed().as_secs() < 30, "never pending");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    env.sandbox
        .inject(Fault::times(FaultKind::ServerError(503), 10_000));
    let failed = loop {
        let r = row().await;
        if r["state"] == "failed" {
            break r;
        }
        assert!(started.elapsed().as_secs() < 60, "never failed: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(failed["retry_class"], "transient", "{failed}");
    assert!(!failed["next_check"].is_null(), "{failed}");
    let table = text(&env.certkeeper(&["status"]).await);
    assert!(
        table.contains("last error: CertCentral failed on GET /order/certificate/1001 (503)")
            && table.contains("(while waiting for CertCentral to issue certificate"),
        "{table}"
    );

    let out = renew.wait_with_output().await.expect("renew ends");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_says(&out, "www: FAILED:");
    assert_says(&out, "503");
    let r = row().await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(r["retrying"].is_null(), "{r}");
    assert!(
        r["last_error"].as_str().is_some_and(|e| e.contains("503")),
        "{r}"
    );
}

/// Renaming a certificate while its request is pending: `check` points at the state left
/// under the old name and says how to carry it over; once moved, the renewal continues under
/// the new name with the same request (no second one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_certificate_keeps_its_pending_request() {
    use certkeeper::sandbox::SandboxConfig;
    let env = TestEnv::with(SandboxConfig {
        issuance_delay: std::time::Duration::from_secs(3),
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", ""));
    let out = env.certkeeper(&["renew", "--wait", "0s"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_says(&out, "still waiting for CertCentral to issue certificate");

    env.write_config("", &env.cert("web", ""));
    let out = env.certkeeper(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let old = env.path("state/certs/www");
    assert_says(
        &out,
        "warning: certificate \"www\" is no longer configured but its state holds a renewal (step pending at order 1001 (reissue)",
    );
    assert_says(&out, &format!("rename {} and", old.display()));

    std::fs::rename(&old, env.path("state/certs/web")).expect("mv");
    let out = env.certkeeper(&["check"]).await;
    assert!(
        !text(&out).contains("no longer configured"),
        "{}",
        text(&out)
    );
    let out = env.certkeeper(&["renew", "web", "--wait", "30s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.sandbox.count("POST", "/reissue"), 1, "the same request");
    env.assert_installed_set_valid("web");
}

/// The README's first command, once: the demo issues a certificate on a DV order, validating
/// its names through the demo's web server (the order's method switched to http-token), and
/// leaves nothing published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_validates_and_issues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["demo", "--once", "--dir", crate::common::path_str(&demo)])
        .env("CERTKEEPER_LOG", "info")
        .output()
        .await
        .expect("demo runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for line in [
        "renewed demo: serial",
        "switching the order's DCV method cert=demo order_id=1001 from=\"email\" to=http-token",
        "publishing for validation cert=demo order_id=1001 domain=demo.example.test",
        "the CA validated every name",
        "removed what was published for validation",
    ] {
        assert_says(&out, line);
    }
    assert!(
        !demo.join("www/.well-known").exists(),
        "nothing left published"
    );
    let verify = crate::common::openssl(&[
        "verify",
        "-CAfile",
        crate::common::path_str(&demo.join("sandbox-root.pem")),
        "-untrusted",
        crate::common::path_str(&demo.join("certs/chain.pem")),
        crate::common::path_str(&demo.join("certs/cert.pem")),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
