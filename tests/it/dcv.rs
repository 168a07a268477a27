//! Domain validation done by certkeeper itself, against the sandbox validating for real: a web
//! root served by a real nginx (http-token), records in a real BIND through RFC 2136 with TSIG
//! and through `dns_publish` hooks calling Debian's `nsupdate` (dns-txt-token,
//! dns-cname-token). Every test also checks that nothing published is left behind.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use certkeeper::renewal::Outcome;
use certkeeper::sandbox::{Fault, FaultKind, OrderSpec, Reach, SandboxConfig};

use crate::common::{TestEnv, assert_says, path_str};
use crate::servers::{Bind, Nginx, PADDING};

/// A sandbox whose order 1001 (DV: no validation reuse) has `names`, checking through `reach`.
async fn env_with(names: &str, reach: Reach, tune: impl FnOnce(&mut SandboxConfig)) -> TestEnv {
    let mut order: OrderSpec = format!("1001:{names}").parse().expect("order");
    order.dv = true;
    let mut config = SandboxConfig {
        orders: vec![order],
        reach,
        // Only when asked: the tests see each check-dcv.
        dcv_poll: Duration::ZERO,
        ..SandboxConfig::default()
    };
    tune(&mut config);
    TestEnv::with(config).await
}

fn dns_reach(bind: &Bind) -> Reach {
    Reach {
        resolve: Vec::new(),
        dns_server: Some(bind.addr().parse().expect("addr")),
    }
}

async fn renew(env: &TestEnv, name: &str, force: bool) -> Outcome {
    env.renew(name, force, Duration::from_secs(60)).await
}

async fn drive(env: &TestEnv, name: &str) -> Outcome {
    env.drive(name).await
}

/// A TSIG key file that others may read, which certkeeper refuses to use.
fn world_readable_tsig_key(env: &TestEnv) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let key = env.path("tsig.key");
    std::fs::write(
        &key,
        "key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\n",
    )
    .expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    key
}

/// The `[[dns_update]]` table for `bind`.
fn dns_update(bind: &Bind) -> String {
    format!(
        "[[dns_update]]\nname = \"primary\"\nserver = \"{}\"\ntsig_key_file = \"{}\"\n",
        bind.addr(),
        bind.key_file.display()
    )
}

/// Configures certificate `www` for `method` through RFC 2136 into `bind`, checked at `bind`.
fn write_rfc2136_config(env: &TestEnv, bind: &Bind, method: &str) {
    env.write_config(
        "",
        &format!(
            "{}\n{}",
            dns_update(bind),
            env.cert(
                "www",
                &format!(
                    "dcv_method = \"{method}\"\ndns_update = \"primary\"\ndns_resolver = \"{}\"",
                    bind.addr()
                )
            )
        ),
    );
}

fn journal(env: &TestEnv, name: &str) -> serde_json::Value {
    serde_json::from_slice(&env.read(&format!("state/certs/{name}/journal.json"))).expect("journal")
}

/// http-token: the file is served by nginx for each name, CertCentral (the sandbox) fetches
/// it, the certificate is issued and installed; the file and the folders certkeeper created
/// are gone afterwards. The whole renewal costs at most 6 CertCentral requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_token_through_nginx() {
    let servers = tempfile::tempdir().expect("tempdir");
    let root = servers.path().join("www");
    std::fs::create_dir_all(&root).expect("root");
    let nginx = Nginx::webroot(servers.path().join("nginx"), &root);
    let web: SocketAddr = format!("127.0.0.1:{}", nginx.port).parse().expect("addr");
    let env = env_with(
        "example.test,www.example.test",
        Reach {
            resolve: vec![("*".into(), web)],
            dns_server: None,
        },
        |_| {},
    )
    .await;
    env.write_config(
        "",
        &env.cert(
            "www",
            &format!(
                "dcv_method = \"http-token\"\nhttp_root = \"{}\"",
                root.display()
            ),
        ),
    );
    let outcome = renew(&env, "www", false).await;
    assert!(
        matches!(outcome, Outcome::Renewed { .. }),
        "{outcome:?} {:#?}",
        env.sandbox.requests()
    );
    env.assert_installed_set_valid("www");
    let log = nginx.access_log();
    assert_eq!(
        log.matches("GET /.well-known/pki-validation/fileauth.txt HTTP/1.1\" 200")
            .count(),
        2,
        "the file was served for each name:\n{log}"
    );
    assert!(
        !root.join(".well-known").exists(),
        "nothing left in the web root"
    );
    assert_eq!(journal(&env, "www")["published"], serde_json::json!([]));
    let calls = env.sandbox.requests().len();
    assert!(calls <= 6, "{calls} requests: {:?}", env.sandbox.requests());
    assert_eq!(env.sandbox.count("PUT", "/check-dcv"), 1);
}

/// Two certificates on one web root (`example.test` and `www.example.test`, two orders) share
/// `fileauth.txt`: both values are served while both wait, each renewal takes out only its own
/// line, and a file a deploy wiped meanwhile is noticed and published again. Nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_certificates_share_a_web_root_and_a_wiped_file_is_republished() {
    let servers = tempfile::tempdir().expect("tempdir");
    let root = servers.path().join("www");
    std::fs::create_dir_all(&root).expect("root");
    let nginx = Nginx::webroot(servers.path().join("nginx"), &root);
    let web: SocketAddr = format!("127.0.0.1:{}", nginx.port).parse().expect("addr");
    let reach = Reach {
        resolve: vec![("*".into(), web)],
        dns_server: None,
    };
    let env = env_with("example.test", reach, |c| {
        let mut www: OrderSpec = "1002:www.example.test".parse().expect("order");
        www.dv = true;
        c.orders.push(www);
        // The CA's first check of each order lags: both wait with their values published.
        c.faults.push(Fault::times(FaultKind::DcvNotYet, 2));
    })
    .await;
    let http = format!(
        "dcv_method = \"http-token\"\nhttp_root = \"{}\"",
        root.display()
    );
    env.write_config(
        "",
        &format!(
            "{}{}",
            env.cert("apex", &http),
            env.cert("www", &http)
                .replace("order_id = 1001", "order_id = 1002")
        ),
    );
    let file = root.join(".well-known/pki-validation/fileauth.txt");
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&file)
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    for name in ["apex", "www"] {
        let outcome = drive(&env, name).await;
        assert!(matches!(outcome, Outcome::Waiting { .. }), "{outcome:?}");
    }
    let both = lines();
    assert_eq!(both.len(), 2, "both values are served: {both:?}");

    let outcome = renew(&env, "apex", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    env.assert_installed_set_valid("apex");
    assert_eq!(lines(), both[1..], "only apex's value was taken out");

    // A deploy replaces the web root's content.
    std::fs::remove_dir_all(root.join(".well-known")).expect("wipe");
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    env.assert_installed_set_valid("www");
    assert!(
        !root.join(".well-known").exists(),
        "nothing left in the web root"
    );
    for name in ["apex", "www"] {
        assert_eq!(journal(&env, name)["published"], serde_json::json!([]));
    }
}

/// RFC 2136 with a TSIG key: one TXT record at `example.test` validates both the name and its
/// wildcard; the SPF record beside it is untouched; the record is deleted afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_txt_by_rfc2136_for_a_wildcard_and_its_base() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let env = env_with("example.test,*.example.test", dns_reach(&bind), |_| {}).await;
    write_rfc2136_config(&env, &bind, "dns-txt-token");
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    env.assert_installed_set_valid("www");
    let cert = std::fs::read_to_string(env.path("certs/www/cert.pem")).expect("cert");
    let facts = certkeeper::crypto::CertFacts::from_pem(&cert).expect("facts");
    assert!(
        facts.dns_names.contains(&"*.example.test".to_owned()),
        "{facts:?}"
    );
    assert_eq!(
        bind.dig("example.test", "TXT"),
        ["v=spf1 -all"],
        "only the SPF record is left"
    );
    assert_eq!(journal(&env, "www")["published"], serde_json::json!([]));
}

/// dns-txt-token at `_dnsauth` through `dns_publish`/`dns_cleanup` hooks that call Debian's
/// `nsupdate`: the hooks see only PATH and certkeeper's DCV variables (never the API key),
/// publish once per record, and clean up what they published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_txt_by_nsupdate_hooks() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let log = servers.path().join("hooks.log");
    let add = bind.nsupdate_hook(servers.path(), "add", &log);
    let delete = bind.nsupdate_hook(servers.path(), "delete", &log);
    let env = env_with("example.test,www.example.test", dns_reach(&bind), |_| {}).await;
    env.write_config(
        "",
        &env.cert(
            "www",
            &format!(
                "dcv_method = \"dns-txt-token\"\ndcv_dns_label = \"_dnsauth\"\ndns_publish = [\"{}\"]\ndns_cleanup = [\"{}\"]\ndns_resolver = \"{}\"",
                add.display(),
                delete.display(),
                bind.addr()
            ),
        ),
    );
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .expect("hook log")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "one add and one delete per domain:\n{lines:#?}"
    );
    for l in &lines {
        // What the hook's environment holds, without what the shell itself adds.
        let vars: Vec<&str> = l
            .rsplit_once("vars=")
            .map(|(_, v)| v)
            .unwrap_or_default()
            .split(',')
            .filter(|v| !v.is_empty() && !["PWD", "OLDPWD", "SHLVL", "_"].contains(v))
            .collect();
        assert_eq!(
            vars,
            [
                "CERTKEEPER_DCV_DOMAIN",
                "CERTKEEPER_DCV_METHOD",
                "CERTKEEPER_DCV_RECORD_NAME",
                "CERTKEEPER_DCV_RECORD_TYPE",
                "CERTKEEPER_DCV_RECORD_VALUE",
                "CERTKEEPER_NAME",
                "PATH"
            ],
            "{l}"
        );
        assert!(
            l.contains(" TXT ") && l.contains("method=dns-txt-token"),
            "{l}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("add _dnsauth.www.example.test TXT "))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("delete _dnsauth.example.test TXT "))
    );
    for name in ["_dnsauth.example.test", "_dnsauth.www.example.test"] {
        assert!(bind.dig(name, "TXT").is_empty(), "{name} was cleaned up");
    }
}

/// dns-cname-token through RFC 2136: `_dnsauth.NAME` CNAME `RANDOM.dcv.digicert.com`, created
/// and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_cname_token() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let env = env_with("example.test", dns_reach(&bind), |_| {}).await;
    write_rfc2136_config(&env, &bind, "dns-cname-token");
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let value = env
        .sandbox
        .random_value(1001)
        .expect("a random value was made");
    assert!(value.len() >= 16);
    assert!(
        bind.dig("_dnsauth.example.test", "CNAME").is_empty(),
        "cleaned up: {}\n{}",
        journal(&env, "www"),
        std::fs::read_to_string(bind.dir.join("named.log")).unwrap_or_default()
    );
}

/// A record that becomes visible only after a while: certkeeper says what it waits for, asks
/// CertCentral only once it is visible, then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_propagation_is_waited_for() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let log = servers.path().join("hooks.log");
    let add = bind.nsupdate_hook(servers.path(), "add", &log);
    let delete = bind.nsupdate_hook(servers.path(), "delete", &log);
    let slow = servers.path().join("slow-add.sh");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\n(sleep 3; {}) >/dev/null 2>&1 &\nexit 0\n",
            add.display()
        ),
    )
    .expect("slow hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let env = env_with("example.test", dns_reach(&bind), |_| {}).await;
    env.write_config(
        "",
        &env.cert(
            "www",
            &format!(
                "dcv_method = \"dns-txt-token\"\ndns_publish = [\"{}\"]\ndns_cleanup = [\"{}\"]\ndns_resolver = \"{}\"",
                slow.display(),
                delete.display(),
                bind.addr()
            ),
        ),
    );
    let first = drive(&env, "www").await;
    let Outcome::Waiting { why, .. } = &first else {
        panic!("{first:?}")
    };
    assert!(
        why.contains(&format!(
            "TXT record for example.test not yet visible at {}",
            bind.addr()
        )),
        "{why}"
    );
    assert_eq!(
        env.sandbox.count("PUT", "/check-dcv"),
        0,
        "not asked before visible"
    );
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_eq!(env.sandbox.count("PUT", "/check-dcv"), 1);
    assert!(bind.dig("example.test", "TXT") == ["v=spf1 -all"]);
}

/// Two authoritative servers, the secondary lagging (its zone transfer held back) and the one
/// the CA asks: certkeeper finds both from the zone's NS records, waits while the secondary
/// lacks the record and says so, and asks CertCentral only once both serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authoritative_server_is_checked_before_the_ca_is_asked() {
    let servers = tempfile::tempdir().expect("tempdir");
    let (primary, secondary) = Bind::pair(servers.path());
    let env = env_with("example.test", dns_reach(&secondary), |_| {}).await;
    env.write_config(
        "",
        &format!(
            "[[dns_update]]\nname = \"primary\"\nserver = \"{}\"\ntsig_key_file = \"{}\"\n{}",
            primary.addr(),
            primary.key_file.display(),
            env.cert(
                "www",
                &format!(
                    "dcv_method = \"dns-txt-token\"\ndns_update = \"primary\"\ndns_resolver = \"{}\"\ndns_propagation_check = \"authoritative\"",
                    primary.addr()
                )
            )
        ),
    );
    let first = drive(&env, "www").await;
    let Outcome::Waiting { why, .. } = &first else {
        panic!("{first:?}")
    };
    assert!(
        why.contains(&format!(
            "TXT record for example.test not yet visible at ns2.example.test ({})",
            secondary.ip
        )) && !why.contains("ns1"),
        "{why}"
    );
    assert_eq!(
        primary.dig("example.test", "TXT").len(),
        2 + PADDING,
        "published at the primary"
    );
    assert_eq!(
        env.sandbox.count("PUT", "/check-dcv"),
        0,
        "not asked while a server lacks it"
    );
    let again = drive(&env, "www").await;
    assert!(matches!(again, Outcome::Waiting { .. }), "{again:?}");
    assert_eq!(env.sandbox.count("PUT", "/check-dcv"), 0);
    secondary.catch_up();
    let started = std::time::Instant::now();
    while secondary.dig("example.test", "TXT").len() < 2 + PADDING {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the secondary never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_eq!(env.sandbox.count("PUT", "/check-dcv"), 1);
    let calls = env.sandbox.requests().len();
    assert!(calls <= 6, "{calls} requests: {:?}", env.sandbox.requests());
    assert_eq!(
        primary.dig("example.test", "TXT").len(),
        1 + PADDING,
        "cleaned up"
    );
}

/// A hook that publishes a wrong value: the request stays pending, `status` shows the method,
/// the names, what is published and CertCentral's answer; nothing is installed. Fixing the
/// command republishes (the wrong record is removed first) and completes the renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_value_stays_pending_and_status_explains() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let log = servers.path().join("hooks.log");
    let add = bind.nsupdate_hook(servers.path(), "add", &log);
    let delete = bind.nsupdate_hook(servers.path(), "delete", &log);
    // A broken pair of commands: both use another value than certkeeper's.
    let broken = |hook: &Path, name: &str| {
        let path = servers.path().join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nCERTKEEPER_DCV_RECORD_VALUE=not-the-value exec {}\n",
                hook.display()
            ),
        )
        .expect("hook");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    };
    let (wrong_add, wrong_delete) = (
        broken(&add, "wrong-add.sh"),
        broken(&delete, "wrong-delete.sh"),
    );
    let env = env_with("example.test", dns_reach(&bind), |_| {}).await;
    let table = |publish: &Path, cleanup: &Path| {
        env.cert(
            "www",
            &format!(
                "dcv_method = \"dns-txt-token\"\ndns_publish = [\"{}\"]\ndns_cleanup = [\"{}\"]\ndns_resolver = \"{}\"\ndns_propagation_timeout = \"1s\"",
                publish.display(),
                cleanup.display(),
                bind.addr()
            ),
        )
    };
    env.write_config("", &table(&wrong_add, &wrong_delete));
    // Published, never visible: after the propagation timeout CertCentral is asked anyway.
    let mut last = drive(&env, "www").await;
    for _ in 0..20 {
        if env.sandbox.count("PUT", "/check-dcv") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        last = drive(&env, "www").await;
    }
    let Outcome::Waiting { why, .. } = &last else {
        panic!("{last:?}")
    };
    assert!(why.contains("invalid_dns_txt"), "{why}");
    assert!(
        !env.path("certs/www/cert.pem").exists(),
        "nothing installed"
    );
    let out = env.certkeeper(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let row = &rows[0];
    assert_eq!(row["state"], "pending", "{row}");
    assert_eq!(row["step"], "validating", "{row}");
    assert_eq!(row["validation"]["method"], "dns-txt-token", "{row}");
    assert_eq!(
        row["validation"]["unvalidated"],
        serde_json::json!(["example.test"]),
        "{row}"
    );
    assert!(
        row["validation"]["last_answer"]
            .as_str()
            .is_some_and(|a| a.starts_with("invalid_dns_txt: Could not find a valid TXT record")),
        "{row}"
    );
    assert!(
        row["validation"]["published"][0]
            .as_str()
            .is_some_and(|p| p.starts_with("example.test TXT") && p.ends_with("(dns_publish)")),
        "{row}"
    );
    let table_out = env.certkeeper(&["status"]).await;
    assert_says(&table_out, "invalid_dns_txt");
    let metrics = certkeeper::metrics::render(&env.config());
    assert!(
        metrics.contains("certkeeper_dcv_checks_total{result=\"not_yet\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certkeeper_validations_in_progress 1"),
        "{metrics}"
    );

    // The fixed commands: the wrong record is taken down with the cleanup command it was
    // published with, the right one is published.
    env.write_config("", &table(&add, &delete));
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    env.assert_installed_set_valid("www");
    assert_eq!(
        bind.dig("example.test", "TXT"),
        ["v=spf1 -all"],
        "both records removed"
    );
}

/// A record that was visible when CertCentral was asked and is gone since (a zone reloaded
/// from its file, a hand edit) is published again before the next check, which then passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_gone_after_the_check_is_published_again() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let env = env_with("example.test", dns_reach(&bind), |c| {
        c.faults.push(Fault::once(FaultKind::DcvNotYet));
    })
    .await;
    write_rfc2136_config(&env, &bind, "dns-txt-token");
    let first = drive(&env, "www").await;
    assert!(matches!(first, Outcome::Waiting { .. }), "{first:?}");
    assert_eq!(env.sandbox.count("PUT", "/check-dcv"), 1, "asked once");
    let value = journal(&env, "www")["published"][0]["what"]["record"]["value"]
        .as_str()
        .expect("the journal names the value")
        .to_owned();
    bind.nsupdate(&[&format!("update delete example.test. TXT \"{value}\"")]);
    assert_eq!(bind.dig("example.test", "TXT"), ["v=spf1 -all"], "gone");

    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    env.assert_installed_set_valid("www");
    assert_eq!(env.sandbox.count("PUT", "/check-dcv"), 2, "one more check");
    assert_eq!(
        bind.dig("example.test", "TXT"),
        ["v=spf1 -all"],
        "taken down"
    );
}

/// An expired random value is replaced and republished: CertCentral answers with a new value,
/// certkeeper publishes it (taking the old record down) and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_random_value_is_republished() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let log = servers.path().join("hooks.log");
    let add = bind.nsupdate_hook(servers.path(), "add", &log);
    let delete = bind.nsupdate_hook(servers.path(), "delete", &log);
    // The first publication takes longer than the value lives.
    let first = servers.path().join("first-slow.sh");
    std::fs::write(
        &first,
        format!(
            "#!/bin/sh\nif [ ! -e {flag} ]; then touch {flag}; sleep 4; fi\nexec {add}\n",
            flag = servers.path().join("flag").display(),
            add = add.display()
        ),
    )
    .expect("hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let env = env_with("example.test", dns_reach(&bind), |c| {
        c.dcv_value_lifetime = Duration::from_secs(3);
    })
    .await;
    env.write_config(
        "",
        &env.cert(
            "www",
            &format!(
                "dcv_method = \"dns-txt-token\"\ndns_publish = [\"{}\"]\ndns_cleanup = [\"{}\"]\ndns_resolver = \"{}\"",
                first.display(),
                delete.display(),
                bind.addr()
            ),
        ),
    );
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let lines = std::fs::read_to_string(&log).expect("log");
    let values: Vec<&str> = lines
        .lines()
        .filter(|l| l.starts_with("add "))
        .filter_map(|l| l.split(' ').nth(3))
        .collect();
    assert!(
        values.len() >= 2 && values[0] != values[1],
        "two values published:\n{lines}"
    );
    for v in &values {
        assert!(
            lines
                .lines()
                .any(|l| l.starts_with("delete ") && l.contains(v)),
            "{v} was cleaned up:\n{lines}"
        );
    }
    assert_eq!(bind.dig("example.test", "TXT"), ["v=spf1 -all"]);
}

/// A renewal abandoned while its records are published (the configuration moved to another
/// order) takes them down before starting over, with what the journal recorded, although the
/// configuration no longer names the DNS server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_attempt_cleans_up() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    // The sandbox asks another DNS server, which never gets the record: validation stays
    // pending.
    let elsewhere = Bind::start(servers.path().join("elsewhere"));
    let env = env_with("example.test", dns_reach(&elsewhere), |c| {
        c.orders.push("1002:example.test".parse().expect("order"));
    })
    .await;
    write_rfc2136_config(&env, &bind, "dns-txt-token");
    let first = drive(&env, "www").await;
    assert!(matches!(first, Outcome::Waiting { .. }), "{first:?}");
    let published = bind.dig("example.test", "TXT");
    assert_eq!(published.len(), 2, "the record is published: {published:?}");
    env.write_config(
        "",
        &env.cert("www", "")
            .replace("order_id = 1001", "order_id = 1002"),
    );
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_eq!(
        bind.dig("example.test", "TXT"),
        ["v=spf1 -all"],
        "taken down"
    );
    assert_eq!(journal(&env, "www")["published"], serde_json::json!([]));
}

/// How many times CertCentral was asked to cancel order 1001's pending request, and did.
pub(crate) fn cancels(env: &TestEnv) -> usize {
    (env.sandbox.requests().iter())
        .filter(|r| {
            r.method == "PUT"
                && r.path.ends_with("/order/certificate/1001/status")
                && r.status == 204
        })
        .count()
}

/// Certificate `www`'s renewal with its validation pending and its record in `bind`: the
/// sandbox asks `elsewhere`, which never gets it. The sandbox also has order 1002, which
/// needs no validation.
pub(crate) async fn stuck_in_validation(bind: &Bind, elsewhere: &Bind) -> TestEnv {
    let env = env_with("example.test", dns_reach(elsewhere), |c| {
        c.orders.push("1002:example.test".parse().expect("order"));
    })
    .await;
    write_rfc2136_config(&env, bind, "dns-txt-token");
    let first = drive(&env, "www").await;
    assert!(matches!(first, Outcome::Waiting { .. }), "{first:?}");
    assert_eq!(
        bind.dig("example.test", "TXT").len(),
        2,
        "the record is published"
    );
    assert!(
        env.path("state/certs/www/key.pem").exists(),
        "a pending key"
    );
    env
}

/// `www`'s renewal was given up: one cancel at CertCentral, the journal idle with nothing
/// published, the pending key gone.
pub(crate) fn assert_given_up(env: &TestEnv) {
    assert_eq!(cancels(env), 1, "{:?}", env.sandbox.requests());
    let j = journal(env, "www");
    assert_eq!(j["step"]["step"], "idle", "{j}");
    assert_eq!(j["published"], serde_json::json!([]));
    assert!(
        !env.path("state/certs/www/key.pem").exists(),
        "the pending key is gone"
    );
}

/// `certkeeper abandon NAME` gives the renewal up: the request is canceled at CertCentral,
/// the record is taken down and the pending key removed; a name without state is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_gives_up_a_renewal_and_takes_down_its_record() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let elsewhere = Bind::start(servers.path().join("elsewhere"));
    let env = stuck_in_validation(&bind, &elsewhere).await;
    let out = env.certkeeper(&["abandon", "www"]).await;
    assert!(out.status.success(), "{}", crate::common::text(&out));
    assert_says(&out, "gave up the renewal at step validating");
    assert_says(&out, "request: canceled at the CA");
    assert_says(&out, "(RFC 2136 at ");
    assert_says(&out, "still configured");
    assert_eq!(
        bind.dig("example.test", "TXT"),
        ["v=spf1 -all"],
        "taken down"
    );
    assert_given_up(&env);
    // Again: nothing left to do, nothing asked of the CA.
    let again = env.certkeeper(&["abandon", "www"]).await;
    assert!(again.status.success());
    assert_says(&again, "no renewal was in progress");
    assert_eq!(cancels(&env), 1);
    let none = env.certkeeper(&["abandon", "nosuch"]).await;
    assert!(!none.status.success());
    assert_says(&none, "no state for a certificate named \"nosuch\"");
}

/// A duplicate cannot be validated: when CertCentral refuses it because validation lapsed,
/// the error says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_refused_for_lack_of_validation_says_what_to_do() {
    let env = TestEnv::new().await;
    env.sandbox.expire_validation(1001);
    env.write_config("", &env.cert("web1", "method = \"duplicate\""));
    let outcome = renew(&env, "web1", false).await;
    let Outcome::Failed { message, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(message.contains("domain_validation_expired"), "{message}");
    assert!(
        message.contains("a duplicate cannot be validated"),
        "{message}"
    );
    assert!(
        message.contains("Reissue the order's primary certificate with dcv_method set"),
        "{message}"
    );
}

/// `check` validates what the new keys point at: a missing http_root, a hook that is not
/// executable, a TSIG key readable by others, each exit 78 with what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_what_validation_needs() {
    let env = TestEnv::new().await;
    let cases = [
        (
            "dcv_method = \"http-token\"\nhttp_root = \"missing-root\"".to_owned(),
            "http_root",
            "is not a folder",
        ),
        (
            "dcv_method = \"dns-txt-token\"\ndns_publish = [\"/nonexistent/dns-set\"]".to_owned(),
            "dns_publish",
            "/nonexistent/dns-set is not an executable file",
        ),
    ];
    for (extra, key, what) in cases {
        env.write_config("", &env.cert("www", &extra));
        let out = env.certkeeper(&["check"]).await;
        assert_eq!(out.status.code(), Some(78), "{key}");
        assert_says(&out, key);
        assert_says(&out, what);
    }
    let key = world_readable_tsig_key(&env);
    env.write_config(
        "",
        &format!(
            "[[dns_update]]\nname = \"primary\"\nserver = \"127.0.0.1:53\"\ntsig_key_file = \"{}\"\n{}",
            path_str(&key),
            env.cert("www", "dcv_method = \"dns-txt-token\"\ndns_update = \"primary\"")
        ),
    );
    let out = env.certkeeper(&["check"]).await;
    assert_eq!(out.status.code(), Some(78));
    assert_says(&out, "TSIG key file");
    assert_says(&out, "readable by group or others (mode 0644)");
}

/// Crash safety of the validation phase: `renew --force` is killed with SIGKILL at many
/// moments of a renewal that validates through slowed-down `dns_publish`/`dns_cleanup` hooks
/// (so that every step of the phase is hit), then `renew` resumes it. Each accepted reissue
/// leads to exactly one installed certificate, no reissue is sent twice, every record published
/// is removed, and `dns_cleanup` never runs for a record that was never published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_validation_loses_and_leaves_nothing() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let log = servers.path().join("hooks.log");
    let slowed = |action: &str| {
        let hook = bind.nsupdate_hook(servers.path(), action, &log);
        let path = servers.path().join(format!("slow-{action}.sh"));
        std::fs::write(
            &path,
            format!("#!/bin/sh\nsleep 0.15\nexec {}\n", hook.display()),
        )
        .expect("hook");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    };
    let (add, delete) = (slowed("add"), slowed("delete"));
    let env = env_with("example.test,www.example.test", dns_reach(&bind), |_| {}).await;
    env.write_config(
        "",
        &env.cert(
            "www",
            &format!(
                "dcv_method = \"dns-txt-token\"\ndns_publish = [\"{}\"]\ndns_cleanup = [\"{}\"]\ndns_resolver = \"{}\"",
                add.display(),
                delete.display(),
                bind.addr()
            ),
        ),
    );
    assert!(env.spawn(&["renew"]).wait().await.expect("first").success());
    let mut serials = vec![crate::common::serial_of(&env.path("certs/www/cert.pem"))];
    for i in 0..12u64 {
        let posts_before = env.sandbox.count("POST", "/reissue");
        assert!(
            env.killed_then_resumed(Duration::from_millis(60 + i * 90))
                .await,
            "iteration {i}: the resumed renewal failed"
        );
        let j = journal(&env, "www");
        assert_eq!(j["step"]["step"], "idle", "iteration {i}: {j}");
        assert_eq!(j["published"], serde_json::json!([]), "iteration {i}: {j}");
        for name in ["example.test", "www.example.test"] {
            let txt: Vec<String> = bind
                .dig(name, "TXT")
                .into_iter()
                .filter(|t| !t.starts_with("v=spf1"))
                .collect();
            assert!(txt.is_empty(), "iteration {i}: {name} still has {txt:?}");
        }
        let now = crate::common::serial_of(&env.path("certs/www/cert.pem"));
        match env.sandbox.count("POST", "/reissue") - posts_before {
            0 => assert_eq!(&now, serials.last().expect("serial"), "iteration {i}"),
            1 => {
                assert!(!serials.contains(&now), "iteration {i}: not installed");
                serials.push(now);
            }
            n => panic!("iteration {i}: {n} reissues for one renewal"),
        }
    }
    assert!(
        serials.len() >= 6,
        "most kills land after the request: {}",
        serials.len() - 1
    );
    // Every cleanup is of a record published before it.
    let lines = std::fs::read_to_string(&log).expect("log");
    let mut published: Vec<String> = Vec::new();
    for l in lines.lines() {
        let record: Vec<&str> = l.split(' ').skip(1).take(3).collect();
        let record = record.join(" ");
        if l.starts_with("add ") {
            published.push(record);
        } else if l.starts_with("delete ") {
            assert!(
                published.contains(&record),
                "dns_cleanup for {record}, never published:\n{lines}"
            );
        }
    }
    env.assert_installed_set_valid("www");
}

/// A TSIG key the daemon cannot use (readable by others, so refused) needs a person: the
/// renewal fails before anything is asked of the CA, backs off to `poll_max` (not the short
/// backoff of a passing failure), `on_failure` runs once however often it is retried, and
/// `status` says the class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_tsig_key_waits_for_a_person() {
    let env = env_with("example.test,www.example.test", Reach::default(), |_| {}).await;
    let key = world_readable_tsig_key(&env);
    let log = env.path("failures.log");
    let path = env.write_config(
        &format!(
            "on_failure = [\"sh\", \"-c\", \"echo $CERTKEEPER_STATE >> {}\"]",
            log.display()
        ),
        &format!(
            "[[dns_update]]\nname = \"primary\"\nserver = \"127.0.0.1:53\"\ntsig_key_file = \"{}\"\n{}",
            path_str(&key),
            env.cert("www", "dcv_method = \"dns-txt-token\"\ndns_update = \"primary\"")
        ),
    );
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        text.replace("poll_max = \"2s\"", "poll_max = \"30m\""),
    )
    .expect("config");

    let before = certkeeper::model::unix_now();
    let Outcome::Failed {
        message,
        retry_at,
        class,
    } = drive(&env, "www").await
    else {
        panic!("not failed");
    };
    assert!(message.contains("TSIG key file"), "{message}");
    assert_eq!(class, certkeeper::renewal::RetryClass::NeedsPerson);
    assert!(
        retry_at >= before + 1800,
        "retry at {retry_at}: not poll_max"
    );
    for _ in 0..3 {
        let again = renew(&env, "www", false).await;
        assert!(matches!(again, Outcome::Failed { .. }), "{again:?}");
    }
    assert_eq!(
        env.sandbox.requests().len(),
        0,
        "nothing was asked of the CA"
    );
    let told = std::fs::read_to_string(&log).expect("on_failure ran");
    assert_eq!(
        told.lines().collect::<Vec<_>>(),
        ["stuck"],
        "on_failure runs once"
    );
    let out = env.certkeeper(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[0]["retry_class"], "needs_person", "{}", rows[0]);
    assert_eq!(rows[0]["stuck"], true, "{}", rows[0]);
}

/// CAA records that do not name DigiCert (served by a real BIND) refuse the renewal before any
/// request, naming the records and the one to add; `check --online` says the same. Once the
/// record allows DigiCert, the same renewal goes through. A name below the zone is judged by
/// the records at the zone (the climb of RFC 8659).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caa_records_that_forbid_digicert_cost_no_request() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    bind.nsupdate(&["update add example.test. 60 CAA 0 issue \"letsencrypt.org\""]);
    let env = TestEnv::new().await;
    env.write_config(
        "",
        &env.cert("www", &format!("dns_resolver = \"{}\"", bind.addr())),
    );
    let outcome = drive(&env, "www").await;
    let Outcome::Failed { message, class, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        message.contains("CAA records forbid the CA")
            && message.contains("for www.example.test")
            && message.contains("(0 issue \"letsencrypt.org\")")
            && message.contains("add `example.test. CAA 0 issue \"digicert.com\"`"),
        "{message}"
    );
    assert_eq!(class, certkeeper::renewal::RetryClass::NeedsPerson);
    assert_eq!(env.sandbox.count("POST", "/reissue"), 0, "no request");
    let check = env.certkeeper(&["check", "--online"]).await;
    assert_eq!(
        check.status.code(),
        Some(1),
        "{}",
        crate::common::text(&check)
    );
    assert_says(
        &check,
        "do not allow digicert.com to issue for www.example.test",
    );

    bind.nsupdate(&["update add example.test. 60 CAA 0 issue \"digicert.com\""]);
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_eq!(env.sandbox.count("POST", "/reissue"), 1);
    let check = env.certkeeper(&["check", "--online"]).await;
    assert_says(&check, "ok: the CAA records allow digicert.com");

    // What one engine found is kept for a minute (the records' TTL here): a burst of renewals
    // asks DNS once; a fresh cache sees the change.
    use certkeeper::validation::caa;
    let resolver = bind.addr().parse().expect("addr");
    let names = ["www.example.test".to_owned()];
    let cache = caa::Cache::default();
    let digicert = caa::Issuer::digicert();
    let ask = |cache| caa::refusals(resolver, &names, &digicert, cache);
    assert_eq!(ask(&cache).await.expect("asked"), Vec::<String>::new());
    bind.nsupdate(&["update delete example.test. CAA 0 issue \"digicert.com\""]);
    assert_eq!(ask(&cache).await.expect("kept"), Vec::<String>::new());
    let fresh = caa::Cache::default();
    assert_eq!(ask(&fresh).await.expect("asked").len(), 1, "forbidden now");
}

/// An RFC 2136 update the server refuses (NOTAUTH, rcode 9: `zone = "test"` holds the name but
/// is not the server's) is a failure naming the answer, not a record taken as published; a
/// zone that does not hold the name is refused before anything is sent. Neither asks
/// CertCentral's check-dcv.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dns_update_is_a_failure() {
    let servers = tempfile::tempdir().expect("tempdir");
    let bind = Bind::start(servers.path().join("bind"));
    let env = env_with("example.test", dns_reach(&bind), |_| {}).await;
    for (zone, said) in [
        ("test", "answered Not authorized (rcode 9)"),
        ("elsewhere.test", "is not in zone elsewhere.test"),
    ] {
        env.write_config(
            "",
            &format!(
                "{}zone = \"{zone}\"\n{}",
                dns_update(&bind),
                env.cert(
                    "www",
                    &format!(
                        "dcv_method = \"dns-txt-token\"\ndns_update = \"primary\"\ndns_resolver = \"{}\"",
                        bind.addr()
                    )
                )
            ),
        );
        let outcome = env.renew("www", false, Duration::from_secs(30)).await;
        let Outcome::Failed { message, .. } = outcome else {
            panic!("{zone}: {outcome:?}");
        };
        assert!(message.contains(said), "{zone}: {message}");
    }
    assert_eq!(
        env.sandbox.count("PUT", "/check-dcv"),
        0,
        "the CA was not asked"
    );
}

/// A delegated validation name (`_dnsauth.NAME` a CNAME to a name the hooks may write, as
/// with acme-dns): the hook writes the TXT record at the target, and the propagation check
/// follows the CNAME, so CertCentral is asked as soon as the target holds the record rather
/// than after the whole `dns_propagation_timeout`. Checked at `dns_resolver`, and at every
/// authoritative server (where a lagging secondary lacks the target's record at first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_record_is_seen_through_its_cname() {
    const TARGET: &str = "_dnsauth.delegated.example.test";
    let servers = tempfile::tempdir().expect("tempdir");
    // Hooks that write the record at the target, as a delegation's hooks do.
    let hooks = |bind: &Bind, dir: &Path| {
        bind.nsupdate(&[&format!(
            "update add _dnsauth.example.test 60 CNAME {TARGET}."
        )]);
        let log = dir.join("hooks.log");
        let [add, delete] = ["add", "delete"].map(|action| {
            let plain = bind.nsupdate_hook(dir, action, &log);
            let path = dir.join(format!("delegated-{action}.sh"));
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\n[ \"$CERTKEEPER_DCV_RECORD_NAME\" = _dnsauth.example.test ] || exit 1\nCERTKEEPER_DCV_RECORD_NAME={TARGET} exec {}\n",
                    plain.display()
                ),
            )
            .expect("hook");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            path
        });
        format!(
            "dcv_method = \"dns-txt-token\"\ndcv_dns_label = \"_dnsauth\"\ndns_publish = [\"{}\"]\ndns_cleanup = [\"{}\"]\ndns_resolver = \"{}\"\ndns_propagation_timeout = \"10m\"\n",
            add.display(),
            delete.display(),
            bind.addr()
        )
    };
    let issued = |outcome: Outcome| match outcome {
        done @ Outcome::Renewed { .. } => done,
        other => panic!("{other:?}"),
    };

    // At the resolver: asked at the first look.
    let bind = Bind::start(servers.path().join("bind"));
    let env = env_with("example.test", dns_reach(&bind), |_| {}).await;
    let at_resolver = hooks(&bind, servers.path());
    env.write_config("", &env.cert("www", &at_resolver));
    let first = drive(&env, "www").await;
    assert_eq!(
        env.sandbox.count("PUT", "/check-dcv"),
        1,
        "asked as soon as the hook wrote the target: {first:?}"
    );
    if !matches!(first, Outcome::Renewed { .. }) {
        issued(renew(&env, "www", false).await);
    }
    assert!(bind.dig(TARGET, "TXT").is_empty(), "cleaned up");
    assert_eq!(bind.dig("_dnsauth.example.test", "CNAME"), [TARGET]);

    // At every authoritative server: the secondary serves the CNAME, and its target's record
    // only once it has caught up.
    let pair = servers.path().join("pair");
    std::fs::create_dir_all(&pair).expect("mkdir");
    let (primary, secondary) = Bind::pair(&pair);
    let env = env_with("example.test", dns_reach(&secondary), |_| {}).await;
    let everywhere = hooks(&primary, &pair) + "dns_propagation_check = \"authoritative\"";
    secondary.catch_up();
    env.write_config("", &env.cert("www", &everywhere));
    let first = drive(&env, "www").await;
    let Outcome::Waiting { why, .. } = &first else {
        panic!("{first:?}")
    };
    assert!(
        why.contains("_dnsauth.example.test not yet visible at ns2.example.test"),
        "{why}"
    );
    assert_eq!(env.sandbox.count("PUT", "/check-dcv"), 0);
    secondary.catch_up();
    issued(renew(&env, "www", false).await);
    assert_eq!(env.sandbox.count("PUT", "/check-dcv"), 1);
}
