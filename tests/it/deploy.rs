//! Safe deployment with a real nginx (installed by .ci/run): reload and verify, rollback when
//! a check fails, permissions, symlink safety, and what hooks see.

use std::os::unix::fs::MetadataExt;

use certkeeper::sandbox::{Fault, FaultKind};

use crate::common::{API_KEY, TestEnv, assert_says, path_str, serial_of, text};
use crate::servers::Nginx;

fn snapshot(env: &TestEnv) -> Vec<Vec<u8>> {
    ["cert.pem", "key.pem", "chain.pem", "fullchain.pem"]
        .iter()
        .map(|f| env.read(&format!("certs/www/{f}")))
        .collect()
}

/// A renewal with nginx reload and verify_endpoint ends with nginx serving the new serial; a
/// failing deploy_check, or a reload that does not take, leaves nginx on the old certificate
/// and the files byte-identical, and `status` reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_reload_verify_and_rollback() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let nginx = Nginx::tls(
        env.path("nginx"),
        &env.path("certs/www/fullchain.pem"),
        &env.path("certs/www/key.pem"),
    );
    let first = serial_of(&env.path("certs/www/cert.pem"));
    assert_eq!(nginx.served_serial(), first);

    let hooks = format!(
        "deploy_check = {}\nreload = {}\nverify_endpoint = \"127.0.0.1:{}\"\nhook_timeout = \"10s\"",
        nginx.toml_argv(&["-t", "-q"]),
        nginx.toml_argv(&["-s", "reload"]),
        nginx.port
    );
    env.write_config("", &env.cert("www", &hooks));
    let out = env.certkeeper(&["renew", "--force"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = serial_of(&env.path("certs/www/cert.pem"));
    assert_ne!(second, first);
    assert_eq!(
        nginx.settled_serial(&second),
        second,
        "nginx serves the new certificate"
    );
    env.assert_installed_set_valid("www");

    // A failing deploy check: rolled back, nginx untouched, files identical.
    let before = snapshot(&env);
    let failing = hooks.replace(
        &nginx.toml_argv(&["-t", "-q"]),
        "[\"sh\", \"-c\", \"echo config broken >&2; exit 1\"]",
    );
    env.write_config("", &env.cert("www", &failing));
    let out = env.certkeeper(&["renew", "--force"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out)
            .contains("deploy_check failed: sh exited with exit status: 1; output: config broken"),
        "{}",
        text(&out)
    );
    assert_eq!(
        snapshot(&env),
        before,
        "files are byte-identical after the rollback"
    );
    assert_eq!(
        nginx.settled_serial(&second),
        second,
        "nginx still serves the previous certificate"
    );
    let status = env.certkeeper(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(rows[0]["state"], "failed");
    assert!(
        rows[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("deploy_check failed")),
        "{rows}"
    );

    // A reload that does not take: verify_endpoint sees the old leaf and rolls back.
    let no_reload = hooks
        .replace(&nginx.toml_argv(&["-s", "reload"]), "[\"true\"]")
        .replace("hook_timeout = \"10s\"", "hook_timeout = \"2s\"");
    env.write_config("", &env.cert("www", &no_reload));
    let out = env.certkeeper(&["renew", "--force"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_says(&out, "verify_endpoint failed");
    assert_says(
        &out,
        &format!("still presents another certificate (serial {second})"),
    );
    assert_eq!(snapshot(&env), before);
    assert_eq!(nginx.settled_serial(&second), second);

    // Fixed: the kept certificate is installed without a new request.
    let posts = env.sandbox.count("POST", "/reissue");
    env.write_config("", &env.cert("www", &hooks));
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        env.sandbox.count("POST", "/reissue"),
        posts,
        "the retry reused the issued certificate"
    );
    let third = serial_of(&env.path("certs/www/cert.pem"));
    assert_ne!(third, second);
    assert_eq!(nginx.settled_serial(&third), third);
}

/// Owner, group and modes apply; keys are never readable by others; missing folders are
/// created (a key's with the configured group, 0750); a symlink at a target that leads out of
/// the state directory is refused with a clear error and never followed; once it is gone, the
/// install succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_symlinks() {
    let env = TestEnv::new().await;
    std::fs::create_dir_all(env.path("elsewhere")).expect("dir");
    std::fs::write(env.path("elsewhere/victim"), b"do not touch").expect("victim");
    std::fs::create_dir_all(env.path("certs/www")).expect("dir");
    std::os::unix::fs::symlink(env.path("elsewhere/victim"), env.path("certs/www/cert.pem"))
        .expect("symlink");
    let extra = "group = \"nogroup\"\nkey_mode = \"0640\"\ncert_mode = \"0640\"\nkey_file = \"private/deep/www.key\"";
    let cert = env
        .cert("www", extra)
        .replace("key_file = \"certs/www/key.pem\"\n", "");
    env.write_config("", &cert);
    // The unit runs with UMask=0077: modes must not depend on the umask.
    let out = tokio::process::Command::new("sh")
        .args([
            "-c",
            "umask 077 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_certkeeper"),
            "-c",
            path_str(&env.path("certkeeper.toml")),
            "renew",
        ])
        .env_remove("CERTKEEPER_API_KEY")
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_says(&out, "is a symlink to");
    assert_says(&out, "outside certkeeper's state directory");
    assert!(
        !env.path("state/live/www/adopted").exists(),
        "nothing adopted through the link"
    );
    std::fs::remove_file(env.path("certs/www/cert.pem")).expect("remove the planted link");
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (dir, mode) in [
        ("state", 0o755),
        ("state/live", 0o755),
        ("state/live/www", 0o755),
        ("state/certs", 0o700),
    ] {
        assert_eq!(
            std::fs::metadata(env.path(dir)).expect(dir).mode() & 0o777,
            mode,
            "{dir}"
        );
    }

    assert_eq!(
        std::fs::read(env.path("elsewhere/victim")).expect("victim"),
        b"do not touch"
    );
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .expect("lookup")
        .expect("nogroup exists")
        .gid
        .as_raw();
    for (file, mode) in [
        ("private/deep/www.key", 0o640),
        ("certs/www/cert.pem", 0o640),
        ("certs/www/chain.pem", 0o640),
    ] {
        let meta = std::fs::metadata(env.path(file)).expect("installed");
        assert_eq!(meta.mode() & 0o777, mode, "{file}");
        assert_eq!(meta.gid(), nogroup, "{file}");
    }
    let key_dir = std::fs::metadata(env.path("private/deep")).expect("dir");
    assert_eq!(
        (key_dir.mode() & 0o777, key_dir.gid()),
        (0o750, nogroup),
        "a missing key folder gets the configured group, so the service reaches its key"
    );
    // The pending key in the state directory was 0600 and is gone after the install.
    assert!(!env.path("state/certs/www/key.pem").exists());
    assert_eq!(
        std::fs::metadata(env.path("state/certs/www"))
            .expect("state")
            .mode()
            & 0o777,
        0o700
    );
}

/// Hooks run without a shell and see only PATH and the CERTKEEPER_* variables: never the API
/// key, even when it came from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_only_their_variables() {
    let env = TestEnv::new().await;
    let dump = env.path("hook-env.txt");
    let cert = env.cert(
        "www",
        &format!("reload = [\"sh\", \"-c\", \"env > {}\"]", dump.display()),
    );
    env.write_config("", &cert);
    let cfg = std::fs::read_to_string(env.path("certkeeper.toml"))
        .expect("cfg")
        .replace("api_key_file = \"api-key\"\n", "");
    std::fs::write(env.path("certkeeper.toml"), cfg).expect("cfg");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["-c", path_str(&env.path("certkeeper.toml")), "renew"])
        .env("CERTKEEPER_API_KEY", API_KEY)
        .env("SOME_SECRET", "leak")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let seen = std::fs::read_to_string(&dump).expect("hook ran");
    assert!(!seen.contains(API_KEY) && !seen.contains("leak"), "{seen}");
    let mut names: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.split('=').next())
        .filter(|n| *n != "PWD" && *n != "SHLVL" && *n != "_")
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "CERTKEEPER_CERT_FILE",
            "CERTKEEPER_CHAIN_FILE",
            "CERTKEEPER_FULLCHAIN_FILE",
            "CERTKEEPER_KEY_FILE",
            "CERTKEEPER_NAME",
            "CERTKEEPER_NOT_AFTER",
            "CERTKEEPER_SERIAL",
            "PATH"
        ]
    );
    let serial = serial_of(&env.path("certs/www/cert.pem"));
    assert!(
        seen.contains(&format!("CERTKEEPER_SERIAL={serial}")),
        "{seen}"
    );
    assert!(
        seen.contains(&format!(
            "CERTKEEPER_CERT_FILE={}",
            env.path("certs/www/cert.pem").display()
        )),
        "{seen}"
    );
}

/// Failures reach a person: `on_failure` (here the `[daemon]` default) runs once when the
/// certificate enters `failed`, not on every retry, and once more when it turns `stuck`; an
/// error only a person can fix makes it stuck at once;
/// a different failure is told again, the same one retried is not;
/// `on_renewed` (per certificate) runs after each renewal and re-arms `on_failure`. Both see
/// the documented variables and never the API key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_renewals_notify_once() {
    let env = TestEnv::new().await;
    let log = env.path("notify.log");
    let record = |what: &str| {
        format!(
            "[\"sh\", \"-c\", \"echo {what} $CERTKEEPER_NAME $CERTKEEPER_STATE \
             days=$CERTKEEPER_DAYS_LEFT error=$CERTKEEPER_ERROR >> {}; env >> {}.env\"]",
            log.display(),
            log.display()
        )
    };
    env.write_config(
        &format!("on_failure = {}", record("failure")),
        &env.cert("www", &format!("on_renewed = {}", record("renewed"))),
    );
    // Days left are whole days, floored: a 90-day certificate has 89 a second after issuance.
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.replace("days=89 ", "days=90 "))
            .collect()
    };
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lines().len(), 1);
    assert!(
        lines()[0].starts_with("renewed www renewed days=90 "),
        "{:?}",
        lines()
    );

    // A CertCentral outage (transient): failed (notified once); five failures in a row (each
    // `renew` tries three times) make it stuck, which is said once.
    env.sandbox.inject(Fault::times(
        FaultKind::ServerError(503),
        3 * certkeeper::cli::RENEW_ATTEMPTS,
    ));
    for _ in 0..3 {
        let out = env.certkeeper(&["renew", "--force"]).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    }
    let seen = lines();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen[1].starts_with("failure www failed days=90 error=CertCentral failed on"),
        "{seen:?}"
    );
    assert!(
        seen[2].starts_with("failure www stuck days=90 error="),
        "{seen:?}"
    );

    // Back: renewed, and the next failure is news again. A wrong API key needs a person: it
    // is stuck at once, told once, and not retried by `renew`.
    let out = env.certkeeper(&["renew", "--force"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    env.write_key("wrong", 0o600);
    let posts = env.sandbox.requests().len();
    let out = env.certkeeper(&["renew", "--force"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(env.sandbox.requests().len(), posts + 1, "tried once");
    let out = env.certkeeper(&["renew", "--force"]).await;
    assert_eq!(out.status.code(), Some(1));
    let seen = lines();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen[3].starts_with("renewed www renewed"), "{seen:?}");
    assert!(
        seen[4].starts_with("failure www stuck days=90 error=CertCentral answered 403"),
        "{seen:?}"
    );
    let status = env.certkeeper(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(rows[0]["retry_class"], "needs_person", "{}", rows[0]);
    assert_eq!(rows[0]["stuck"], true, "{}", rows[0]);

    // The key is fixed, and CertCentral fails otherwise: a different failure is news (failed,
    // then stuck once it lasts); the same one retried is not.
    env.write_key(API_KEY, 0o600);
    for _ in 0..3 {
        env.sandbox.inject(Fault::times(
            FaultKind::ServerError(503),
            certkeeper::cli::RENEW_ATTEMPTS,
        ));
        let out = env.certkeeper(&["renew", "--force"]).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    }
    let seen = lines();
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert!(
        seen[5].starts_with("failure www failed days=90 error=CertCentral failed on"),
        "{seen:?}"
    );
    assert!(
        seen[6].starts_with("failure www stuck days=90 error=CertCentral failed on"),
        "{seen:?}"
    );
    let environments = std::fs::read_to_string(env.path("notify.log.env")).expect("env");
    assert!(
        !environments.contains(API_KEY),
        "the API key never reaches a hook"
    );
}

/// A rollback killed halfway (SIGKILL while the post-rollback reload runs) is finished at the
/// next start and recorded as the failure it was, even though the check that failed would
/// pass now: the restored old files are never "deployed" as a renewal, the key age and last
/// success stay; a later run installs the kept certificate without a new request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rollback_is_finished_not_counted_as_renewed() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let old = env.read("certs/www/cert.pem");
    let journal = || -> serde_json::Value {
        serde_json::from_slice(&env.read("state/certs/www/journal.json")).expect("journal")
    };
    let (key_created, last_success) = (
        journal()["key_created"].clone(),
        journal()["last_success"].clone(),
    );

    let dir = env.path("");
    let hooks = format!(
        "deploy_check = [\"sh\", \"-c\", \"if [ -e {d}/fail-once ]; then rm {d}/fail-once; echo config broken; exit 1; fi\"]\n\
         reload = [\"sh\", \"-c\", \"echo reload >> {d}/reloads; if [ -e {d}/hang-once ]; then rm {d}/hang-once; touch {d}/reloading; exec sleep 20; fi\"]",
        d = dir.display()
    );
    env.write_config("", &env.cert("www", &hooks));
    std::fs::write(env.path("fail-once"), "").expect("marker");
    std::fs::write(env.path("hang-once"), "").expect("marker");
    let mut renew = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args([
            "-c",
            path_str(&env.path("certkeeper.toml")),
            "renew",
            "--force",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("renew");
    let started = std::time::Instant::now();
    while !env.path("reloading").exists() {
        assert!(
            started.elapsed().as_secs() < 20,
            "the rollback's reload never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    renew.start_kill().expect("SIGKILL");
    let _ = renew.wait().await;
    assert_eq!(journal()["step"]["step"], "rolling_back", "{}", journal());
    let posts = env.sandbox.count("POST", "/reissue");

    // Resumed: the rollback is finished (restore, reload) and the failure recorded.
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_says(
        &out,
        "deploy_check failed: sh exited with exit status: 1; output: config broken",
    );
    assert_eq!(
        env.read("certs/www/cert.pem"),
        old,
        "the old files are live"
    );
    let j = journal();
    assert_eq!(j["step"]["step"], "issued", "{j}");
    assert_eq!(
        (j["key_created"].clone(), j["last_success"].clone()),
        (key_created, last_success),
        "not a renewal"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("reloads"))
            .expect("reloads")
            .lines()
            .count(),
        2,
        "the reload of the interrupted rollback, then the resumed one"
    );

    // Next run: the kept certificate is installed, the check passes now.
    let out = env.certkeeper(&["renew"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_ne!(env.read("certs/www/cert.pem"), old);
    assert_eq!(
        env.sandbox.count("POST", "/reissue"),
        posts,
        "no new request"
    );
    env.assert_installed_set_valid("www");
}
