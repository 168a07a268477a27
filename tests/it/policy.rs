//! The operator's policy against the sandbox: keys rotate by their age, from the evidence on
//! disk, and a certificate's names follow the configuration both ways.

use std::time::Duration;

use certkeeper::renewal::Outcome;
use certkeeper::sandbox::SandboxConfig;

use crate::common::{TestEnv, assert_says, serial_of};

const DAY: i64 = 86_400;

/// A key and a self-signed certificate for `names` that certkeeper did not make, written at
/// the paths of certificate `name`: valid from `age_days` ago for `left_days` more.
fn foreign_pair(env: &TestEnv, name: &str, names: &[&str], age_days: i64, left_days: i64) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("params");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::seconds(age_days * DAY);
    params.not_after = now + time::Duration::seconds(left_days * DAY);
    let cert = params.self_signed(&key).expect("self-signed");
    let dir = env.path(&format!("certs/{name}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key");
}

async fn status(env: &TestEnv) -> serde_json::Value {
    let out = env.certkeeper(&["status", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    rows[0].clone()
}

/// A key certkeeper did not make, under a certificate issued 30 days ago with 200 days left,
/// is 30 days old by the certificate's notBefore: with `rotate_key_after = "10d"` it is due at
/// once, whatever the lifetime, and is rotated. The new key's age comes from certkeeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_key_older_than_rotate_key_after_is_rotated() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", "rotate_key_after = \"10d\""));
    foreign_pair(&env, "www", &["example.test", "www.example.test"], 30, 200);
    let old_key = env.read("certs/www/key.pem");

    let row = status(&env).await;
    assert_eq!(row["state"], "due", "{row}");
    assert_eq!(row["key_age_days"], 30, "{row}");
    assert_eq!(row["key_age_source"], "certificate's notBefore", "{row}");
    assert_eq!(row["renewal_rule"], "rotate_key_after", "{row}");
    assert!(
        row["detail"]
            .as_str()
            .is_some_and(|d| d.contains("key is 30 days old (rotate_key_after)")),
        "{row}"
    );
    let check = env.certkeeper(&["check"]).await;
    assert_says(&check, "key 30 days old (from the certificate's notBefore)");

    let outcome = env.renew("www", false, Duration::from_secs(30)).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_eq!(env.sandbox.count("POST", "/reissue"), 1);
    assert_ne!(
        env.read("certs/www/key.pem"),
        old_key,
        "the key was rotated"
    );
    env.assert_installed_set_valid("www");

    let row = status(&env).await;
    assert_eq!(row["state"], "ok", "{row}");
    assert_eq!(row["key_age_days"], 0, "{row}");
    assert_eq!(
        row["key_age_source"], "time certkeeper generated it",
        "{row}"
    );
    let again = env.renew("www", false, Duration::from_secs(30)).await;
    assert!(matches!(again, Outcome::NotDue { .. }), "{again:?}");
    assert_eq!(env.sandbox.count("POST", "/reissue"), 1, "no rotation loop");
}

/// A name taken out of `dns_names` makes the certificate due; it is reissued without the name,
/// and is not due again. The common name's free `www.` companion is not such a name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_removed_from_dns_names_is_reissued_without_it() {
    let env = TestEnv::with(SandboxConfig {
        orders: vec![
            "1001:example.test,www.example.test,api.example.test"
                .parse()
                .expect("order"),
        ],
        ..SandboxConfig::default()
    })
    .await;
    let names = |list: &str| {
        env.cert(
            "www",
            &format!("common_name = \"example.test\"\ndns_names = [{list}]"),
        )
    };
    env.write_config(
        "",
        &names("\"example.test\", \"www.example.test\", \"api.example.test\""),
    );
    let first = env.renew("www", false, Duration::from_secs(30)).await;
    assert!(matches!(first, Outcome::Renewed { .. }), "{first:?}");
    let first_serial = serial_of(&env.path("certs/www/cert.pem"));

    // Without www.example.test: the companion stays, nothing is due.
    env.write_config("", &names("\"example.test\", \"api.example.test\""));
    let row = status(&env).await;
    assert_eq!(row["state"], "ok", "{row}");

    // Without api.example.test: due, reissued for the configured names only.
    env.write_config("", &names("\"example.test\""));
    let row = status(&env).await;
    assert_eq!(row["state"], "due", "{row}");
    assert!(
        row["detail"].as_str().is_some_and(
            |d| d.contains("certificate has names no longer configured: api.example.test")
        ),
        "{row}"
    );
    let outcome = env.renew("www", false, Duration::from_secs(30)).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_ne!(serial_of(&env.path("certs/www/cert.pem")), first_serial);
    let text = String::from_utf8(env.read("certs/www/cert.pem")).expect("utf-8");
    let facts = certkeeper::crypto::CertFacts::from_pem(&text).expect("parse");
    assert_eq!(facts.dns_names, vec!["example.test".to_owned()]);
    let again = env.renew("www", false, Duration::from_secs(30)).await;
    assert!(matches!(again, Outcome::NotDue { .. }), "{again:?}");
    assert_eq!(env.sandbox.count("POST", "/reissue"), 2);
}

/// Files planted at the configured paths once certkeeper has installed the certificate (a
/// certificate for other names, or one with no lifetime at all, with its own key) cost no CA
/// request: the live certificate is intact, so its links are restored. Six plants, no reissue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_files_cost_no_request() {
    let env = TestEnv::new().await;
    env.write_config(
        "",
        &env.cert(
            "www",
            "dns_names = [\"example.test\", \"www.example.test\"]",
        ),
    );
    let first = env.renew("www", false, Duration::from_secs(30)).await;
    assert!(matches!(first, Outcome::Renewed { .. }), "{first:?}");
    let serial = serial_of(&env.path("certs/www/cert.pem"));
    let posts = env.sandbox.count("POST", "/reissue");
    for round in 0..6 {
        for f in ["cert.pem", "key.pem"] {
            std::fs::remove_file(env.path(&format!("certs/www/{f}"))).expect("rm link");
        }
        if round % 2 == 0 {
            foreign_pair(&env, "www", &["evil.test"], 1, 200);
        } else {
            foreign_pair(&env, "www", &["example.test", "www.example.test"], 0, 0);
        }
        let outcome = env.drive("www").await;
        assert!(
            matches!(outcome, Outcome::NotDue { .. }),
            "round {round}: {outcome:?}"
        );
        let link = std::fs::symlink_metadata(env.path("certs/www/cert.pem")).expect("link");
        assert!(
            link.file_type().is_symlink(),
            "round {round}: relinked: {outcome:?}"
        );
    }
    assert_eq!(env.sandbox.count("POST", "/reissue"), posts, "no request");
    assert_eq!(serial_of(&env.path("certs/www/cert.pem")), serial);
    env.assert_installed_set_valid("www");
}
