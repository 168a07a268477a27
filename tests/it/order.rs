//! Duplicates, names from the order, and the order's lifecycle, against the sandbox.

use std::time::Duration;

use certkeeper::renewal::{DriveOptions, Outcome};
use certkeeper::sandbox::{OrderSpec, SandboxConfig};

use crate::common::{API_KEY, TestEnv};

async fn drive(env: &TestEnv, name: &str, opts: DriveOptions) -> Outcome {
    let config = env.config();
    let cert = config.certificate(name).expect("configured");
    certkeeper::cli::renew_one(&env.engine(), cert, opts, Duration::from_secs(30))
        .await
        .expect("drive")
}

async fn get(env: &TestEnv, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}{path}", env.sandbox.url()))
        .header("X-DC-DEVKEY", API_KEY)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

fn failed(outcome: Outcome) -> String {
    match outcome {
        Outcome::Failed { message, .. } => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// `method = "duplicate"`: an extra certificate with its own key, found in the duplicate list
/// by its key (also when approval makes it wait); the order's primary certificate is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_leave_the_primary_alone() {
    let env = TestEnv::with(SandboxConfig {
        approval_delay: Duration::from_secs(2),
        ..SandboxConfig::default()
    })
    .await;
    let primary = get(&env, "/order/certificate/1001").await["certificate"]["id"].clone();
    let host = |n: &str| env.cert(n, "method = \"duplicate\"");
    env.write_config(
        "",
        &format!(
            "{}\n{}",
            host("web1"),
            host("web2").replace("skip_approval = true\n", "")
        ),
    );
    for name in ["web1", "web2"] {
        let outcome = drive(&env, name, DriveOptions::default()).await;
        assert!(
            matches!(outcome, Outcome::Renewed { .. }),
            "{name}: {outcome:?}"
        );
        env.assert_installed_set_valid(name);
    }
    assert_ne!(
        env.read("certs/web1/key.pem"),
        env.read("certs/web2/key.pem")
    );
    assert_eq!(
        get(&env, "/order/certificate/1001").await["certificate"]["id"],
        primary,
        "primary untouched"
    );
    assert_eq!(env.sandbox.count("POST", "/duplicate"), 2);
    assert_eq!(env.sandbox.count("POST", "/reissue"), 0);
    let list = get(&env, "/order/certificate/1001/duplicate").await;
    let subs: Vec<&str> = list["certificates"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["sub_id"].as_str())
        .collect();
    assert_eq!(subs, ["001", "002"]);
}

/// Names that break the duplicate rules are refused locally, in the config's terms, before
/// any request; nothing is retried until the config changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_rules_are_checked_locally() {
    let env = TestEnv::with(SandboxConfig {
        orders: vec!["1001:example.test,*.example.test".parse().expect("order")],
        ..SandboxConfig::default()
    })
    .await;
    let cert = |names: &str| {
        env.cert(
            "web",
            &format!("method = \"duplicate\"\ndns_names = [{names}]"),
        )
    };
    env.write_config("", &cert("\"other.test\""));
    let message = failed(drive(&env, "web", DriveOptions::default()).await);
    assert!(
        message
            .contains("a duplicate may only use the order's names (example.test, *.example.test)"),
        "{message}"
    );
    assert!(message.contains("ask for other.test"), "{message}");
    assert_eq!(env.sandbox.count("POST", "/duplicate"), 0);
    env.assert_blocked("web").await;
    let status = certkeeper::status::rows(&env.config(), certkeeper::renewal::KeyCheck::Embedded);
    assert!(
        status[0].stuck && status[0].state == "failed",
        "{:?}",
        status[0]
    );

    // A SAN may become the CN, and a wildcard covers single-label subdomains.
    env.write_config(
        "",
        &cert("\"api.example.test\"")
            .replace("dns_names", "common_name = \"api.example.test\"\ndns_names"),
    );
    let outcome = drive(&env, "web", DriveOptions::default()).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
}

/// On `invalid_dns_name_on_duplicate` for the order's auto-added `www.` companion, certkeeper
/// retries once without it, with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companion_name_is_dropped_once() {
    let mut order: OrderSpec = "1001:shop.example.test".parse().expect("order");
    order.auto_companion = true;
    let env = TestEnv::with(SandboxConfig {
        orders: vec![order],
        ..SandboxConfig::default()
    })
    .await;
    let info = get(&env, "/order/certificate/1001").await;
    assert_eq!(
        info["certificate"]["dns_names"],
        serde_json::json!(["shop.example.test", "www.shop.example.test"])
    );
    env.write_config("", &env.cert("web", "method = \"duplicate\""));
    let outcome = drive(&env, "web", DriveOptions::default()).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let statuses: Vec<u16> = env
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [400, 201]);
    let text = String::from_utf8(env.read("certs/web/cert.pem")).expect("pem");
    let facts = certkeeper::crypto::CertFacts::from_pem(&text).expect("cert");
    assert_eq!(facts.dns_names, ["shop.example.test"]);
}

/// An order that ended is reported loudly and not retried until the config changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_order_is_reported_and_not_retried() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    env.sandbox.set_order_status(1001, "expired");
    let message = failed(drive(&env, "www", DriveOptions::default()).await);
    assert!(
        message.contains(
            "order 1001 is expired: it can no longer be renewed; a new CertCentral order is needed"
        ),
        "{message}"
    );
    env.assert_blocked("www").await;
    assert!(
        certkeeper::status::rows(&env.config(), certkeeper::renewal::KeyCheck::Embedded)[0].stuck
    );
    // The operator moves the certificate to a new order.
    env.sandbox
        .add_order(&"2002:example.test,www.example.test".parse().expect("order"))
        .expect("add");
    env.write_config(
        "",
        &env.cert("www", "")
            .replace("order_id = 1001", "order_id = 2002"),
    );
    let outcome = drive(&env, "www", DriveOptions::default()).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert!(
        !certkeeper::status::rows(&env.config(), certkeeper::renewal::KeyCheck::Embedded)[0].stuck
    );
}

/// A configuration change lifts a block, so a failure after it is told again, even when it
/// reads like the one before (the new order has ended too); while blocked, nothing is told
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_a_config_change_is_told_again() {
    let env = TestEnv::new().await;
    let log = env.path("notify.log");
    let on_failure = format!(
        "on_failure = [\"sh\", \"-c\", \"echo $CERTKEEPER_STATE $CERTKEEPER_ORDER_ID >> {}\"]",
        log.display()
    );
    env.write_config("", &env.cert("www", &on_failure));
    env.sandbox.set_order_status(1001, "expired");
    failed(drive(&env, "www", DriveOptions::default()).await);
    env.assert_blocked("www").await;
    let told = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(told(), "stuck 1001\n");
    env.sandbox
        .add_order(&"2002:example.test,www.example.test".parse().expect("order"))
        .expect("add");
    env.sandbox.set_order_status(2002, "expired");
    env.write_config(
        "",
        &env.cert("www", &on_failure)
            .replace("order_id = 1001", "order_id = 2002"),
    );
    let message = failed(drive(&env, "www", DriveOptions::default()).await);
    assert!(message.contains("order 2002 is expired"), "{message}");
    env.assert_blocked("www").await;
    assert_eq!(told(), "stuck 1001\nstuck 2002\n");
}

/// A reissue pending on the order that certkeeper did not start is reported as foreign;
/// with `cancel_foreign_reissue = true` it is canceled and ours proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_reissue_is_reported_or_canceled() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    env.sandbox
        .start_foreign_reissue(1001, false)
        .expect("foreign");
    assert_eq!(
        get(&env, "/order/certificate/1001").await["status"],
        "reissue_pending"
    );
    let message = failed(drive(&env, "www", DriveOptions::default()).await);
    assert!(
        message.contains("pending reissue that certkeeper did not start"),
        "{message}"
    );
    assert!(!env.path("certs/www/cert.pem").exists());

    env.write_config("", &env.cert("www", "cancel_foreign_reissue = true"));
    let outcome = drive(&env, "www", DriveOptions::default()).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_eq!(env.sandbox.count("PUT", "/status"), 1);
    env.assert_installed_set_valid("www");
}

/// Multi-year plans: `cert_validity_days` is sent as `certificate.cert_validity.days`; past the
/// order's end, CertCentral's error is explained in the config's terms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_validity_days_is_sent_and_explained() {
    let mut order: OrderSpec = "1001:example.test".parse().expect("order");
    let end = time::OffsetDateTime::now_utc().date() + time::Duration::days(30);
    order.order_valid_till = Some(end.to_string());
    order.multi_year_plan = true;
    let mut plain: OrderSpec = "1002:plain.example.test".parse().expect("order");
    plain.order_valid_till = Some(end.to_string());
    let env = TestEnv::with(SandboxConfig {
        orders: vec![order, plain],
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", "cert_validity_days = 100"));
    let message = failed(drive(&env, "www", DriveOptions::default()).await);
    assert!(
        message.contains("cert_validity_exceeds_order_validity"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "cert_validity_days = 100 runs past the end of order 1001 ({end}); lower it"
        )),
        "{message}"
    );
    env.write_config("", &env.cert("www", "cert_validity_days = 20"));
    let outcome = drive(&env, "www", DriveOptions::default()).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let days = certkeeper::status::rows(&env.config(), certkeeper::renewal::KeyCheck::Embedded)[0]
        .days_left;
    assert!(
        days.is_some_and(|d| (19..=20).contains(&d)),
        "the certificate runs the 20 days asked for: {days:?}"
    );

    // Not a Multi-year Plan: CertCentral ignores cert_validity on reissues; the certificate
    // runs to the order's end at most (the sandbox issues 90 days, capped), and
    // `check --online` says the setting does nothing.
    env.write_config(
        "",
        &env.cert("www", "cert_validity_days = 100")
            .replace("order_id = 1001", "order_id = 1002"),
    );
    let force = DriveOptions {
        force: true,
        ignore_backoff: true,
    };
    let outcome = drive(&env, "www", force).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let days = certkeeper::status::rows(&env.config(), certkeeper::renewal::KeyCheck::Embedded)[0]
        .days_left;
    assert!(
        days.is_some_and(|d| (29..=30).contains(&d)),
        "capped at the order's end: {days:?}"
    );
    let out = env.certkeeper(&["check", "--online"]).await;
    crate::common::assert_says(&out, "the order is not a Multi-year Plan");
}
