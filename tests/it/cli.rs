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
    let want = format!("{}:{line}:12: unknown variant `rsa-1024`", cfg.display());
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
