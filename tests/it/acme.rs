//! ACME issuers against a real Pebble (Debian's package, and a newer one for ARI and
//! profiles): http-01 through a web root served by nginx, dns-01 through RFC 2136 and through
//! `nsupdate` hooks into a real BIND that Pebble resolves with, External Account Binding, a
//! failing challenge, crashes at every moment, and CertCentral and ACME certificates in one
//! configuration.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use certkeeper::renewal::{DriveOptions, Outcome, Step, Target};

use crate::common::{TestEnv, assert_says, openssl, path_str, serial_of};
use crate::servers::{
    Bind, EAB_HMAC, EAB_KID, Nginx, Pebble, PebbleKind, PebbleOptions, free_port,
};

/// The servers an ACME test needs: BIND (names resolve to 127.0.0.1, records for dns-01), a
/// web root served by nginx (http-01), Pebble, and the usual test environment.
struct Acme {
    env: TestEnv,
    bind: Bind,
    nginx: Nginx,
    pebble: Pebble,
    root: std::path::PathBuf,
    _servers: tempfile::TempDir,
}

impl Acme {
    async fn start(kind: PebbleKind, eab_required: bool) -> Self {
        let servers = tempfile::tempdir().expect("tempdir");
        let bind = Bind::start(servers.path().join("bind"));
        let root = servers.path().join("www");
        std::fs::create_dir_all(&root).expect("root");
        let nginx = Nginx::webroot(servers.path().join("nginx"), &root);
        let pebble = Pebble::start(
            servers.path().join("pebble"),
            PebbleOptions {
                kind,
                http_port: nginx.port,
                dns: bind.addr(),
                eab_required,
            },
        );
        let env = TestEnv::new().await;
        std::fs::write(env.path("pebble-root.pem"), pebble.issuing_root().await).expect("root");
        Self {
            env,
            bind,
            nginx,
            pebble,
            root,
            _servers: servers,
        }
    }

    /// The `[[acme]]` table, with extra lines.
    fn acme_table(&self, extra: &str) -> String {
        format!(
            "[[acme]]\nname = \"pebble\"\ndirectory = \"{}\"\nca_file = \"{}\"\n{extra}\n",
            self.pebble.directory(),
            self.pebble.ca_file.display()
        )
    }

    /// An ACME certificate table for `names` (the first is the common name).
    fn cert(&self, name: &str, names: &[&str], extra: &str) -> String {
        let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        format!(
            "[[certificate]]\nname = \"{name}\"\nacme = \"pebble\"\ncommon_name = {:?}\ndns_names = [{}]\ncert_file = \"certs/{name}/cert.pem\"\nkey_file = \"certs/{name}/key.pem\"\nchain_file = \"certs/{name}/chain.pem\"\nfullchain_file = \"certs/{name}/fullchain.pem\"\n{extra}\n",
            names[0],
            list.join(", ")
        )
    }

    fn http01(&self) -> String {
        format!(
            "challenge = \"http-01\"\nhttp_root = \"{}\"",
            self.root.display()
        )
    }

    async fn renew(&self, name: &str, force: bool) -> Outcome {
        self.env.renew(name, force, Duration::from_secs(60)).await
    }

    /// openssl: the installed chain verifies to Pebble's root, and the key matches.
    fn assert_valid(&self, name: &str) {
        let dir = self.env.path(&format!("certs/{name}"));
        let out = openssl(&[
            "verify",
            "-CAfile",
            path_str(&self.env.path("pebble-root.pem")),
            "-untrusted",
            path_str(&dir.join("chain.pem")),
            path_str(&dir.join("cert.pem")),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = openssl(&["pkey", "-in", path_str(&dir.join("key.pem")), "-pubout"]);
        let cert = openssl(&[
            "x509",
            "-in",
            path_str(&dir.join("cert.pem")),
            "-noout",
            "-pubkey",
        ]);
        assert_eq!(key.stdout, cert.stdout, "key and certificate differ");
    }
}

/// The one account file certkeeper keeps for `[[acme]] name = "pebble"` (one per directory).
fn account_file(env: &TestEnv) -> std::path::PathBuf {
    let accounts = accounts(env);
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    accounts[0].clone()
}

/// Every account file kept for `[[acme]] name = "pebble"`.
fn accounts(env: &TestEnv) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(env.path("state/acme/pebble"))
        .expect("accounts")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("account-") && name.ends_with(".json")
        })
        .collect();
    found.sort();
    found
}

/// http-01 through nginx: the first issuance creates the account (P-256, stored 0600), a
/// renewal reuses it; challenge files are gone afterwards. The same configuration holds a
/// CertCentral certificate: `status`, metrics and `check` treat both alike. DigiCert's
/// directory parameters ride along on the directory URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issuance_and_renewal_beside_certcentral() {
    let a = Acme::start(PebbleKind::Bookworm, false).await;
    a.env.write_config(
        "",
        &format!(
            "{}{}{}{}",
            a.acme_table("contact = [\"mailto:ops@example.test\"]"),
            a.cert("shop", &["example.test", "www.example.test"], &a.http01()),
            a.cert(
                "dup",
                &["api.example.test"],
                &format!("{}\norder_id = 1001\nmethod = \"duplicate\"", a.http01())
            ),
            a.env.cert("cc", ""),
        ),
    );
    for name in ["shop", "dup", "cc"] {
        let outcome = a.renew(name, false).await;
        assert!(
            matches!(outcome, Outcome::Renewed { .. }),
            "{name}: {outcome:?}"
        );
    }
    a.assert_valid("shop");
    a.assert_valid("dup");
    a.env.assert_installed_set_valid("cc");
    let account = account_file(&a.env);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&account).expect("account").mode() & 0o777,
        0o600
    );
    let stored = std::fs::read(&account).expect("account");
    assert!(
        !a.root.join(".well-known/acme-challenge").exists(),
        "challenge files removed"
    );
    assert!(
        a.nginx
            .access_log()
            .contains("/.well-known/acme-challenge/"),
        "pebble fetched them"
    );

    let first = serial_of(&a.env.path("certs/shop/cert.pem"));
    let outcome = a.renew("shop", true).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_ne!(serial_of(&a.env.path("certs/shop/cert.pem")), first);
    assert_eq!(
        std::fs::read(&account).expect("account"),
        stored,
        "the account is reused"
    );

    let out = a.env.certkeeper(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let issuers: Vec<(&str, &str, &str)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or(""),
                r["issuer"].as_str().unwrap_or(""),
                r["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        issuers,
        [
            ("shop", "acme:pebble", "ok"),
            ("dup", "acme:pebble", "ok"),
            ("cc", "certcentral", "ok")
        ]
    );
    assert_eq!(rows[1]["order_id"], 1001);
    let metrics = certkeeper::metrics::render(&a.env.config());
    assert!(
        metrics.contains("certkeeper_certificate_ready_status{name=\"shop\",order_id=\"\",issuer=\"acme:pebble\",condition=\"True\"} 1"),
        "{metrics}"
    );
    // The renewals ran in this process: the requests to Pebble are counted (new orders are 201).
    let host = format!("127.0.0.1:{}", a.pebble.port);
    assert!(
        metrics.contains(&format!(
            "certkeeper_acme_requests_total{{host=\"{host}\",method=\"POST\",status=\"201\"}}"
        )),
        "{metrics}"
    );
    let journal =
        std::fs::read_to_string(a.env.path("state/certs/dup/journal.json")).expect("journal");
    assert!(journal.contains("\"last_success\""), "{journal}");
    let check = a.env.certkeeper(&["check", "--online"]).await;
    assert!(check.status.success(), "{}", crate::common::text(&check));
    assert_says(&check, "online checks against ACME CA \"pebble\"");
    assert_says(&check, "ok: the directory answers");
    assert_says(&check, "ok: account");
    assert_says(&check, "renewal information (ARI) not offered");
}

/// dns-01 for a name and its wildcard, through RFC 2136 into BIND (which Pebble resolves
/// with), and through `nsupdate` hooks; the TXT records are removed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_by_rfc2136_and_by_hooks() {
    let a = Acme::start(PebbleKind::Bookworm, false).await;
    let log = a.env.path("hooks.log");
    let add = a.bind.nsupdate_hook(a.env.dir.path(), "add", &log);
    let delete = a.bind.nsupdate_hook(a.env.dir.path(), "delete", &log);
    let update = format!(
        "[[dns_update]]\nname = \"primary\"\nserver = \"{}\"\ntsig_key_file = \"{}\"\nzone = \"example.test\"\n",
        a.bind.addr(),
        a.bind.key_file.display()
    );
    a.env.write_config(
        "",
        &format!(
            "{}{update}{}{}",
            a.acme_table(""),
            a.cert(
                "wild",
                &["example.test", "*.example.test"],
                &format!("challenge = \"dns-01\"\ndns_update = \"primary\"\ndns_resolver = \"{}\"", a.bind.addr())
            ),
            a.cert(
                "api",
                &["api.example.test"],
                &format!(
                    "challenge = \"dns-01\"\ndns_publish = [\"{}\"]\ndns_cleanup = [\"{}\"]\ndns_resolver = \"{}\"",
                    add.display(),
                    delete.display(),
                    a.bind.addr()
                )
            ),
        ),
    );
    for name in ["wild", "api"] {
        let outcome = a.renew(name, false).await;
        assert!(
            matches!(outcome, Outcome::Renewed { .. }),
            "{name}: {outcome:?}\n{}",
            a.pebble.log()
        );
        a.assert_valid(name);
    }
    let hooks = std::fs::read_to_string(&log).expect("log");
    assert!(
        hooks.contains("add _acme-challenge.api.example.test TXT"),
        "{hooks}"
    );
    assert!(hooks.contains("method=dns-01"), "{hooks}");
    for name in [
        "_acme-challenge.example.test",
        "_acme-challenge.api.example.test",
    ] {
        assert!(a.bind.dig(name, "TXT").is_empty(), "{name} cleaned up");
    }
}

/// dns-01 with two authoritative servers, the secondary lagging and the one Pebble asks: the
/// challenge is answered only once both serve the record (answered early, Pebble would find
/// no record and fail the authorization).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_waits_for_every_authoritative_server() {
    let servers = tempfile::tempdir().expect("tempdir");
    let (primary, secondary) = Bind::pair(servers.path());
    let pebble = Pebble::start(
        servers.path().join("pebble"),
        PebbleOptions {
            kind: PebbleKind::Bookworm,
            http_port: free_port(),
            dns: secondary.addr(),
            eab_required: false,
        },
    );
    let env = TestEnv::new().await;
    env.write_config(
        "",
        &format!(
            "[[acme]]\nname = \"pebble\"\ndirectory = \"{}\"\nca_file = \"{}\"\n\
             [[dns_update]]\nname = \"primary\"\nserver = \"{}\"\ntsig_key_file = \"{}\"\n\
             [[certificate]]\nname = \"www\"\nacme = \"pebble\"\ncommon_name = \"www.example.test\"\n\
             cert_file = \"certs/www/cert.pem\"\nkey_file = \"certs/www/key.pem\"\n\
             challenge = \"dns-01\"\ndns_update = \"primary\"\ndns_resolver = \"{}\"\n\
             dns_propagation_check = \"authoritative\"\n",
            pebble.directory(),
            pebble.ca_file.display(),
            primary.addr(),
            primary.key_file.display(),
            primary.addr(),
        ),
    );
    let config = env.config();
    let cert = config.certificate("www").expect("configured");
    let first = env
        .engine()
        .drive(cert, DriveOptions::default())
        .await
        .expect("drive");
    let Outcome::Waiting { why, .. } = &first else {
        panic!("{first:?}\n{}", pebble.log())
    };
    assert!(
        why.contains(&format!(
            "TXT record for _acme-challenge.www.example.test not yet visible at ns2.example.test ({})",
            secondary.ip
        )),
        "{why}"
    );
    secondary.catch_up();
    let started = std::time::Instant::now();
    while secondary
        .dig("_acme-challenge.www.example.test", "TXT")
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the secondary never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = env.renew("www", false, Duration::from_secs(60)).await;
    assert!(
        matches!(outcome, Outcome::Renewed { .. }),
        "{outcome:?}\n{}",
        pebble.log()
    );
    assert!(
        primary
            .dig("_acme-challenge.www.example.test", "TXT")
            .is_empty(),
        "cleaned up"
    );
}

/// A CA that requires External Account Binding: without the key the failure says so, and
/// `check --online` too; with it the account is created (EAB sent once) and reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding() {
    let a = Acme::start(PebbleKind::Bookworm, true).await;
    let cert = a.cert("shop", &["example.test"], &a.http01());
    a.env
        .write_config("", &format!("{}{cert}", a.acme_table("")));
    let check = a.env.certkeeper(&["check", "--online"]).await;
    assert_eq!(
        check.status.code(),
        Some(1),
        "{}",
        crate::common::text(&check)
    );
    assert_says(&check, "the CA requires External Account Binding");
    let outcome = a.renew("shop", false).await;
    let Outcome::Failed { message, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(message.contains("externalAccountRequired"), "{message}");

    let key = a.env.path("eab-hmac");
    std::fs::write(&key, format!("{EAB_HMAC}\n")).expect("key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let eab = format!(
        "eab_kid = \"{EAB_KID}\"\neab_hmac_key_file = \"{}\"",
        key.display()
    );
    a.env
        .write_config("", &format!("{}{cert}", a.acme_table(&eab)));
    let check = a.env.certkeeper(&["check"]).await;
    assert_eq!(
        check.status.code(),
        Some(78),
        "a key readable by others is refused"
    );
    assert_says(&check, "EAB HMAC key file");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let outcome = a.renew("shop", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let stored = std::fs::read(account_file(&a.env)).expect("account");
    let outcome = a.renew("shop", true).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_eq!(
        std::fs::read(account_file(&a.env)).expect("account"),
        stored
    );
}

/// A challenge the CA cannot validate (the web server serves another folder): the failure is
/// reported with the CA's words, the challenge file is removed, and the retry waits for its
/// backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_challenge_is_reported_cleaned_up_and_retried() {
    let a = Acme::start(PebbleKind::Bookworm, false).await;
    let elsewhere = a.env.path("not-served");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    a.env.write_config(
        "",
        &format!(
            "{}{}",
            a.acme_table(""),
            a.cert(
                "shop",
                &["example.test"],
                &format!(
                    "challenge = \"http-01\"\nhttp_root = \"{}\"",
                    elsewhere.display()
                )
            )
        ),
    );
    let config = a.env.config();
    let engine = a.env.engine();
    let cert = config.certificate("shop").expect("cert");
    let mut outcome = engine
        .drive(cert, DriveOptions::default())
        .await
        .expect("drive");
    for _ in 0..40 {
        if !matches!(outcome, Outcome::Waiting { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        outcome = engine
            .drive(cert, DriveOptions::default())
            .await
            .expect("drive");
    }
    let Outcome::Failed {
        message, retry_at, ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(
        message.contains("/.well-known/acme-challenge/") && message.contains("unauthorized"),
        "the CA's own words: {message}"
    );
    assert!(*retry_at > certkeeper::model::unix_now(), "a backoff runs");
    assert!(
        std::fs::read_dir(&elsewhere).expect("dir").next().is_none(),
        "the challenge file and its folders are gone"
    );
    let again = engine
        .drive(cert, DriveOptions::default())
        .await
        .expect("drive");
    assert!(
        matches!(again, Outcome::Failed { .. }),
        "still in backoff: {again:?}"
    );
    let out = a.env.certkeeper(&["status"]).await;
    assert_says(&out, "failed");
    assert_says(&out, "unauthorized");
}

/// Crash safety: `renew --force` is killed at many moments of an ACME renewal, then `renew`
/// resumes it: every run ends idle with a valid, matching certificate installed and nothing
/// left in the web root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_moment_of_an_acme_renewal() {
    let a = Acme::start(PebbleKind::Bookworm, false).await;
    a.env.write_config(
        "",
        &format!(
            "{}{}",
            a.acme_table(""),
            a.cert("shop", &["example.test", "www.example.test"], &a.http01())
        ),
    );
    assert!(
        a.env
            .spawn(&["renew"])
            .wait()
            .await
            .expect("first")
            .success()
    );
    let mut serials = vec![serial_of(&a.env.path("certs/shop/cert.pem"))];
    for i in 0..10u64 {
        assert!(
            a.env
                .killed_then_resumed(Duration::from_millis(40 + i * 70))
                .await,
            "iteration {i}: the resumed renewal failed"
        );
        let journal: serde_json::Value =
            serde_json::from_slice(&a.env.read("state/certs/shop/journal.json")).expect("journal");
        assert_eq!(journal["step"]["step"], "idle", "iteration {i}: {journal}");
        assert_eq!(journal["published"], serde_json::json!([]), "iteration {i}");
        assert!(
            !a.root.join(".well-known").exists(),
            "iteration {i}: challenge files left"
        );
        a.assert_valid("shop");
        let now = serial_of(&a.env.path("certs/shop/cert.pem"));
        if serials.last() != Some(&now) {
            serials.push(now);
        }
    }
    assert!(
        serials.len() >= 5,
        "most kills land inside a renewal: {}",
        serials.len() - 1
    );
}

/// A newer Pebble offers ARI and profiles: the renewal time comes from the CA's window
/// (`status` says so), the next order carries `replaces`, and a profile is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_and_profiles_with_a_newer_pebble() {
    let a = Acme::start(PebbleKind::Newer, false).await;
    a.env.write_config(
        "",
        &format!(
            "{}{}",
            a.acme_table("profile = \"shortlived\""),
            a.cert("shop", &["example.test"], &a.http01())
        ),
    );
    let outcome = a.renew("shop", false).await;
    assert!(
        matches!(outcome, Outcome::Renewed { .. }),
        "{outcome:?}\n{}",
        a.pebble.log()
    );
    let facts = certkeeper::crypto::CertFacts::from_pem(
        &std::fs::read_to_string(a.env.path("certs/shop/cert.pem")).expect("cert"),
    )
    .expect("facts");
    let days = (facts.not_after - facts.not_before) / 86_400;
    assert!(
        (5..=6).contains(&days),
        "the shortlived profile: {days} days"
    );

    // The next look asks for the renewal window.
    let outcome = a.renew("shop", false).await;
    assert!(matches!(outcome, Outcome::NotDue { .. }), "{outcome:?}");
    let out = a.env.certkeeper(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[0]["renewal_rule"], "ari", "{}", rows[0]);
    let check = a.env.certkeeper(&["check", "--online"]).await;
    assert_says(&check, "renewal information (ARI) offered");
    assert_says(&check, "shortlived");

    // A renewal sends `replaces`: the attempt carries it.
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let mut engine = a.env.engine();
    let sink = seen.clone();
    engine.observer = Some(Arc::new(move |_, step: &Step| {
        if let Step::KeyReady { attempt } = step
            && let Target::Acme(t) = &attempt.target
        {
            sink.lock().expect("seen").push(t.replaces.clone());
        }
    }));
    let config = a.env.config();
    let outcome = certkeeper::cli::renew_one(
        &engine,
        config.certificate("shop").expect("cert"),
        DriveOptions {
            force: true,
            ignore_backoff: true,
        },
        Duration::from_secs(60),
    )
    .await
    .expect("drive");
    assert!(
        matches!(outcome, Outcome::Renewed { .. }),
        "{outcome:?}\n{}",
        a.pebble.log()
    );
    let seen = seen.lock().expect("seen").clone();
    assert!(
        matches!(seen.as_slice(), [Some(r)] if r.contains('.')),
        "{seen:?}"
    );
}

/// An ACME CA in maintenance answers 503 with `Retry-After: 120` (RFC 8555 §6.6): the failure
/// is transient and the next attempt waits the 120 s the CA asked for, though the configured
/// backoff is at most 2 s; nothing is retried inside the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_retry_after_sets_the_next_attempt() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The directory and nonces are served; every request to act is refused for maintenance.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let directory = format!(
        r#"{{"newNonce":"http://{addr}/nonce","newAccount":"http://{addr}/account","newOrder":"http://{addr}/order"}}"#
    );
    let nonce = || async {
        (
            [("replay-nonce", "bm9uY2U"), ("cache-control", "no-store")],
            "",
        )
    };
    let app = axum::Router::new()
        .route("/dir", axum::routing::get(move || async move { directory }))
        .route("/nonce", axum::routing::head(nonce).get(nonce))
        .fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    [
                        ("retry-after", "120"),
                        ("content-type", "application/problem+json"),
                        ("replay-nonce", "bm9uY2U"),
                    ],
                    r#"{"type":"urn:ietf:params:acme:error:serverInternal","detail":"down for maintenance","status":503}"#,
                )
            }
        });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let env = TestEnv::new().await;
    env.write_config(
        "",
        &format!(
            "[[acme]]\nname = \"down\"\ndirectory = \"http://{addr}/dir\"\n\n[[certificate]]\nname = \"www\"\nacme = \"down\"\ncommon_name = \"example.test\"\nchallenge = \"dns-01\"\ndns_publish = [\"/bin/true\"]\ncert_file = \"certs/www/cert.pem\"\nkey_file = \"certs/www/key.pem\"\n"
        ),
    );
    let before = certkeeper::model::unix_now();
    let outcome = env.drive("www").await;
    let Outcome::Failed {
        message,
        retry_at,
        class,
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert!(message.contains("down for maintenance"), "{message}");
    assert_eq!(class, certkeeper::renewal::RetryClass::Transient);
    assert!(
        retry_at >= before + 119,
        "retry at {retry_at}: Retry-After (120 s after {before}) not honoured"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "one request, no retry in the call"
    );
}

/// A directory whose body never ends is refused after 1 MiB, by `check --online` (and so by
/// the engine, which reads it the same way), instead of filling memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_directory_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(|| async {
        let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
        let stream =
            futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
        axum::body::Body::from_stream(stream)
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let env = TestEnv::new().await;
    env.write_config(
        "",
        &format!(
            "[[acme]]\nname = \"endless\"\ndirectory = \"http://{addr}/dir\"\n\n[[certificate]]\nname = \"www\"\nacme = \"endless\"\ncommon_name = \"example.test\"\nchallenge = \"dns-01\"\ndns_publish = [\"/bin/true\"]\ncert_file = \"certs/www/cert.pem\"\nkey_file = \"certs/www/key.pem\"\n"
        ),
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        env.certkeeper(&["check", "--online"]),
    )
    .await
    .expect("check --online ends");
    assert_eq!(out.status.code(), Some(1), "{}", crate::common::text(&out));
    assert_says(&out, "larger than 1 MiB");
}

/// Another directory (staging to production, another CA: here a second Pebble) gets an
/// account of its own, so the first renewal after the change succeeds (the old CA's account
/// was reused and every renewal failed); the first CA's account stays for going back, and is
/// used again when the configuration goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_directory_gets_its_own_account() {
    let a = Acme::start(PebbleKind::Bookworm, false).await;
    let cert = a.cert("shop", &["example.test"], &a.http01());
    let first = format!("{}{cert}", a.acme_table(""));
    a.env.write_config("", &first);
    let outcome = a.renew("shop", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let before = accounts(&a.env);
    assert_eq!(before.len(), 1, "{before:?}");

    let servers = tempfile::tempdir().expect("tempdir");
    let other = Pebble::start(
        servers.path().join("pebble"),
        PebbleOptions {
            kind: PebbleKind::Bookworm,
            http_port: a.nginx.port,
            dns: a.bind.addr(),
            eab_required: false,
        },
    );
    a.env.write_config(
        "",
        &format!(
            "[[acme]]\nname = \"pebble\"\ndirectory = \"{}\"\nca_file = \"{}\"\n{cert}",
            other.directory(),
            other.ca_file.display()
        ),
    );
    let outcome = a.renew("shop", true).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let after = accounts(&a.env);
    assert_eq!(after.len(), 2, "an account of its own: {after:?}");
    assert!(after.contains(&before[0]), "the first account stays");

    a.env.write_config("", &first);
    let outcome = a.renew("shop", true).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_eq!(accounts(&a.env), after, "the first account is used again");
}
