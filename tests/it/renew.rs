//! End-to-end renewals through the engine against the sandbox.

use std::time::Duration;

use certkeeper::model::KeyType;
use certkeeper::renewal::{DriveOptions, Outcome};
use certkeeper::sandbox::{Fault, FaultKind, SandboxConfig};

use crate::common::{TestEnv, openssl, path_str, serial_of};

async fn renew(env: &TestEnv, name: &str, force: bool) -> Outcome {
    env.renew(name, force, Duration::from_secs(30)).await
}

/// With no files on disk, the certificate is issued for a key generated here, installed, and
/// verifies with openssl; exactly one reissue was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_issuance_with_no_files() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    env.assert_installed_set_valid("www");
    assert_eq!(env.sandbox.count("POST", "/reissue"), 1);
    let text = String::from_utf8(env.read("certs/www/cert.pem")).expect("utf-8");
    assert_eq!(
        text.matches("BEGIN CERTIFICATE").count(),
        1,
        "cert_file holds the leaf only"
    );
    let full = String::from_utf8(env.read("certs/www/fullchain.pem")).expect("utf-8");
    assert_eq!(
        full.matches("BEGIN CERTIFICATE").count(),
        2,
        "fullchain is leaf + intermediate"
    );
    // Nothing is due right after: a second run sends nothing.
    let again = renew(&env, "www", false).await;
    assert!(matches!(again, Outcome::NotDue { .. }), "{again:?}");
    assert_eq!(env.sandbox.count("POST", "/reissue"), 1);
}

/// A certificate inside its renewal window is renewed with a new key; one outside is not. A
/// `renew_before` longer than the lifetime never makes a fresh certificate due (it is capped
/// at half the lifetime): the certificate is renewed at half its life, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_an_expiring_certificate() {
    // The sandbox backdates by 5 s: a 15-second lifetime. No time-based renewal comes before
    // half of it has passed since the last renewal.
    let env = TestEnv::with(SandboxConfig {
        validity: Duration::from_secs(10),
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", "renew_before = \"2h\""));
    assert!(matches!(
        renew(&env, "www", false).await,
        Outcome::Renewed { .. }
    ));
    let first_serial = serial_of(&env.path("certs/www/cert.pem"));
    let first_key = env.read("certs/www/key.pem");

    // Fresh: not due, whatever renew_before says; `check` explains the cap.
    assert!(matches!(
        renew(&env, "www", false).await,
        Outcome::NotDue { .. }
    ));
    let check = env.certkeeper(&["check"]).await;
    crate::common::assert_says(&check, "exceeds half of this certificate's");
    assert_eq!(env.sandbox.count("POST", "/reissue"), 1);

    // Half its life after its renewal (7.5 s): due, renewed once, with a new key.
    tokio::time::sleep(Duration::from_millis(8000)).await;
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_ne!(serial_of(&env.path("certs/www/cert.pem")), first_serial);
    assert_ne!(
        env.read("certs/www/key.pem"),
        first_key,
        "every renewal uses a new key"
    );
    env.assert_installed_set_valid("www");
    assert!(
        matches!(renew(&env, "www", false).await, Outcome::NotDue { .. }),
        "the new certificate is not due again at once"
    );
    assert_eq!(env.sandbox.count("POST", "/reissue"), 2);
}

/// The reissue trap: while the request waits for approval, the order still shows "issued"
/// with the old certificate. certkeeper keeps waiting, then installs the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_pending_reissue_waits_for_the_new_certificate() {
    let env = TestEnv::with(SandboxConfig {
        approval_delay: Duration::from_secs(3),
        ..SandboxConfig::default()
    })
    .await;
    env.write_config(
        "",
        &env.cert("www", "skip_approval = false")
            .replace("skip_approval = true\n", ""),
    );
    let config = env.config();
    let cert = config.certificate("www").expect("cert");
    let engine = env.engine();

    let first = engine
        .drive(cert, DriveOptions::default())
        .await
        .expect("drive");
    assert!(matches!(first, Outcome::Waiting { .. }), "{first:?}");
    // The order shows the reissue pending, still with the old certificate (the reissue trap:
    // certkeeper waits for the certificate id to change).
    let order: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/order/certificate/1001", env.sandbox.url()))
        .header("X-DC-DEVKEY", crate::common::API_KEY)
        .send()
        .await
        .expect("order")
        .json()
        .await
        .expect("json");
    assert_eq!(order["status"], "reissue_pending");
    assert_eq!(order["has_pending_request"], true);
    assert!(
        !env.path("certs/www/cert.pem").exists(),
        "nothing installed while pending"
    );

    let outcome = certkeeper::cli::renew_one(
        &engine,
        cert,
        DriveOptions::default(),
        Duration::from_secs(30),
    )
    .await
    .expect("drive");
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    env.assert_installed_set_valid("www");
    assert_eq!(
        env.sandbox.count("POST", "/reissue"),
        1,
        "waiting never sends a second request"
    );
}

/// Every key type: the CSR sent verifies with `openssl req -verify` and carries the names,
/// and the installed set verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_type() {
    let env = TestEnv::new().await;
    for (i, kt) in KeyType::ALL.into_iter().enumerate() {
        env.write_config("", &env.cert("www", &format!("key_type = \"{kt}\"")));
        let outcome = renew(&env, "www", true).await;
        assert!(
            matches!(outcome, Outcome::Renewed { .. }),
            "{kt}: {outcome:?}"
        );
        env.assert_installed_set_valid("www");

        let list = env.reissue_list().await;
        let csr = list["certificates"][i]["csr"]
            .as_str()
            .expect("csr listed")
            .to_owned();
        let body: String = csr
            .replace("-----BEGIN CERTIFICATE REQUEST-----", "")
            .replace("-----END CERTIFICATE REQUEST-----", "");
        let wrapped: Vec<String> = body
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            wrapped.join("\n")
        );
        let csr_path = env.path("sent.csr");
        std::fs::write(&csr_path, pem).expect("write csr");
        let out = openssl(&[
            "req",
            "-in",
            path_str(&csr_path),
            "-noout",
            "-verify",
            "-text",
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("verify OK"),
            "{kt}: {text}"
        );
        assert!(
            text.contains("DNS:example.test") && text.contains("DNS:www.example.test"),
            "{kt}: {text}"
        );
        let key_text = String::from_utf8_lossy(
            &openssl(&[
                "pkey",
                "-in",
                path_str(&env.path("certs/www/key.pem")),
                "-noout",
                "-text",
            ])
            .stdout,
        )
        .into_owned();
        let expect = match kt {
            KeyType::Rsa2048 => "2048 bit",
            KeyType::Rsa3072 => "3072 bit",
            KeyType::Rsa4096 => "4096 bit",
            KeyType::EcdsaP256 => "P-256",
            KeyType::EcdsaP384 => "P-384",
        };
        assert!(key_text.contains(expect), "{kt}: {key_text}");
    }
}

/// A certificate for the wrong key (and every other bad answer) is refused: nothing on disk
/// changes, and the failure says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_never_reach_disk() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    assert!(matches!(
        renew(&env, "www", false).await,
        Outcome::Renewed { .. }
    ));
    let files = ["cert.pem", "key.pem", "chain.pem", "fullchain.pem"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| env.read(&format!("certs/www/{f}")))
        .collect();

    let cases = [
        (FaultKind::WrongKey, "is for the new key"),
        (FaultKind::MissingName, "does not cover www.example.test"),
        (FaultKind::Expired, "not valid now"),
        (FaultKind::TruncatedPem, "PEM"),
        (FaultKind::BadChain, "chain does not verify"),
    ];
    for (fault, expect) in cases {
        env.sandbox.inject(Fault::once(fault.clone()));
        let config = env.config();
        let cert = config.certificate("www").expect("cert");
        let outcome = env
            .engine()
            .drive(
                cert,
                DriveOptions {
                    force: true,
                    ignore_backoff: true,
                },
            )
            .await
            .expect("drive");
        match &outcome {
            Outcome::Failed { message, .. } => {
                assert!(message.contains(expect), "{fault:?}: {message}")
            }
            other => panic!("{fault:?}: expected a failure, got {other:?}"),
        }
        let after: Vec<Vec<u8>> = files
            .iter()
            .map(|f| env.read(&format!("certs/www/{f}")))
            .collect();
        assert_eq!(before, after, "{fault:?}: installed files changed");
        // Reset: forget the failed attempt (a new request is allowed after a fix).
        std::fs::remove_dir_all(env.path("state/certs/www")).expect("reset state");
        std::fs::create_dir_all(env.path("state/certs/www")).expect("mkdir");
        env.sandbox.set_order_status(1001, "issued");
    }
    env.assert_installed_set_valid("www");
}

/// CertCentral's error code and message reach the user; a bad key is not retried blindly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_show_code_and_message() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    env.write_key("wrong-key", 0o600);
    match renew(&env, "www", false).await {
        Outcome::Failed { message, .. } => {
            assert!(message.contains("403"), "{message}");
            assert!(message.contains("access_denied|access_denied_invalid_key: Access denied due to access_denied_invalid_key."), "{message}");
        }
        other => panic!("expected failure, got {other:?}"),
    }
    env.write_key(crate::common::API_KEY, 0o600);
    env.write_config(
        "",
        &env.cert("www", "")
            .replace("order_id = 1001", "order_id = 999"),
    );
    match renew(&env, "www", false).await {
        Outcome::Failed { message, .. } => {
            assert!(message.contains("not_found|order"), "{message}")
        }
        other => panic!("expected failure, got {other:?}"),
    }
}

/// 429 without Retry-After and 503 are retried with backoff; the renewal completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried() {
    let env = TestEnv::with(SandboxConfig {
        faults: vec![
            Fault::once(FaultKind::RateLimitAfter(1)),
            Fault::once(FaultKind::ServerError(503)),
        ],
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", ""));
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    let statuses: Vec<u16> = env.sandbox.requests().iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..2], &[429, 503], "{statuses:?}");
    assert_eq!(env.sandbox.count("POST", "/reissue"), 1);
}

/// The answer to the reissue is lost after CertCentral accepted it: the next run finds the
/// request by its key in the reissue list and never sends a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answer_is_reconciled_not_resent() {
    let env = TestEnv::with(SandboxConfig {
        faults: vec![Fault::once(FaultKind::DropSubmitResponse)],
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", ""));
    let config = env.config();
    let cert = config.certificate("www").expect("cert");
    let first = env
        .engine()
        .drive(cert, DriveOptions::default())
        .await
        .expect("drive");
    assert!(matches!(first, Outcome::Failed { .. }), "{first:?}");
    let journal =
        std::fs::read_to_string(env.path("state/certs/www/journal.json")).expect("journal");
    assert!(journal.contains("\"submitting\""), "{journal}");
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_eq!(
        env.sandbox.count("POST", "/reissue"),
        1,
        "the accepted request was not sent again"
    );
    env.assert_installed_set_valid("www");
}

/// Files installed by hand are adopted atomically and kept as the previous generation; a
/// failing deploy check restores them byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_check_failure_restores_previous_files() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    assert!(matches!(
        renew(&env, "www", false).await,
        Outcome::Renewed { .. }
    ));
    let before = env.read("certs/www/cert.pem");
    env.write_config("", &env.cert("www", "deploy_check = [\"false\"]"));
    match renew(&env, "www", true).await {
        Outcome::Failed { message, .. } => {
            assert!(message.contains("deploy_check failed"), "{message}")
        }
        other => panic!("expected failure, got {other:?}"),
    }
    assert_eq!(env.read("certs/www/cert.pem"), before);
    env.assert_installed_set_valid("www");
    // The issued certificate is kept: fixing the check installs it without a new request.
    env.write_config("", &env.cert("www", "deploy_check = [\"true\"]"));
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    assert_ne!(env.read("certs/www/cert.pem"), before);
    assert_eq!(env.sandbox.count("POST", "/reissue"), 2);
}

/// A certificate folder owned (and writable) by the configured `owner` is trusted alike by
/// `check` and by the first install: `check` passes, and so does the renewal (the install
/// refused the folder after the CA had issued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_owned_by_the_configured_owner_is_installed_into() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new().await;
    let folder = env.path("certs/www");
    std::fs::create_dir_all(&folder).expect("folder");
    std::os::unix::fs::chown(&folder, Some(65534), Some(65534))
        .expect("chown (the tests run as root, as ./.ci/run does)");
    let nobody = std::fs::read_to_string("/etc/passwd")
        .expect("passwd")
        .lines()
        .find(|l| l.split(':').nth(2) == Some("65534"))
        .and_then(|l| l.split(':').next().map(str::to_owned))
        .expect("a user 65534");
    env.write_config("", &env.cert("www", &format!("owner = \"{nobody}\"")));
    let out = env.certkeeper(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", crate::common::text(&out));
    let outcome = renew(&env, "www", false).await;
    assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
    env.assert_installed_set_valid("www");
    assert_eq!(
        std::fs::metadata(folder.join("key.pem"))
            .expect("key")
            .uid(),
        65534
    );
}

/// Something keeps replacing the installed certificate with a foreign one: the daemon renews
/// at most three times a day for reasons nobody asked for, then holds the certificate back
/// and says why; a person's `renew` still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_nobody_asked_for_are_limited_per_day() {
    let env = TestEnv::new().await;
    env.write_config("", &env.cert("www", ""));
    assert!(matches!(
        renew(&env, "www", false).await,
        Outcome::Renewed { .. }
    ));
    let root = std::fs::read_to_string(env.path("root.pem")).expect("root");
    let live_cert = env.path("state/live/www/current/cert.pem");
    let daemon_like = || async {
        env.engine()
            .drive(
                env.config().certificate("www").expect("configured"),
                DriveOptions::default(),
            )
            .await
            .expect("drive")
    };
    let posts = env.sandbox.count("POST", "/reissue");
    for round in 1..=4 {
        std::fs::remove_file(&live_cert).expect("rm");
        std::fs::write(&live_cert, &root).expect("foreign certificate");
        let outcome = daemon_like().await;
        match (round, &outcome) {
            (1..=3, Outcome::Renewed { .. }) => {}
            (
                4,
                Outcome::Failed {
                    message, retry_at, ..
                },
            ) => {
                assert!(
                    message.contains(
                        "renewed this certificate 3 times in 24 hours without being asked"
                    ) && message.contains("run `certkeeper renew www`"),
                    "{message}"
                );
                assert!(*retry_at > certkeeper::model::unix_now() + 86_000);
            }
            _ => panic!("round {round}: {outcome:?}"),
        }
    }
    assert_eq!(env.sandbox.count("POST", "/reissue"), posts + 3);
    let out = env.certkeeper(&["status"]).await;
    assert!(
        crate::common::text(&out).contains("3 times in 24 hours"),
        "{}",
        crate::common::text(&out)
    );

    let out = env.certkeeper(&["renew", "www"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", crate::common::text(&out));
    assert_eq!(env.sandbox.count("POST", "/reissue"), posts + 4);
    env.assert_installed_set_valid("www");
}

/// An answer that never ends (a misbehaving proxy) is cut at 1 MiB: the renewal fails with
/// a clear message instead of filling memory, and nothing is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_refused() {
    let env = TestEnv::with(SandboxConfig {
        faults: vec![Fault {
            kind: FaultKind::EndlessBody,
            count: 1000,
        }],
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", ""));
    let started = std::time::Instant::now();
    let outcome = renew(&env, "www", false).await;
    match &outcome {
        Outcome::Failed { message, .. } => assert!(
            message.contains("the answer is larger than 1048576 bytes; refusing it"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused as soon as the cap is passed, not at the timeout"
    );
    assert!(!env.path("certs/www/cert.pem").exists());
}

/// CertCentral issues, but every download times out (`timeout = "2s"`, answers after 5 s):
/// `renew` gives up after its attempts and exits 1 with the error; `status` says the
/// certificate was issued and its download failed, never that CertCentral is still issuing;
/// the next `renew` resumes the download and sends no second reissue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_keeps_timing_out_is_not_a_wait_for_the_ca() {
    let env = TestEnv::with(SandboxConfig {
        issuance_delay: Duration::from_secs(1),
        faults: vec![Fault::times(
            FaultKind::SlowDownload(Duration::from_secs(5)),
            certkeeper::cli::RENEW_ATTEMPTS,
        )],
        ..SandboxConfig::default()
    })
    .await;
    let path = env.write_config("", &env.cert("www", ""));
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        text.replacen(
            "api_key_file = \"api-key\"\n",
            "api_key_file = \"api-key\"\ntimeout = \"2s\"\n",
            1,
        ),
    )
    .expect("config");

    // Bounded by the documented budget (60 s of retries), not by the machine's speed.
    let out = tokio::time::timeout(Duration::from_secs(120), env.certkeeper(&["renew", "www"]))
        .await
        .expect("renew gives up after its budget");
    assert_eq!(out.status.code(), Some(1), "{}", crate::common::text(&out));
    crate::common::assert_says(&out, "FAILED: ");
    crate::common::assert_says(&out, "pem_noroot");

    let status = env.certkeeper(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let row = &rows[0];
    assert_eq!(row["state"], "failed", "{row}");
    let detail = row["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("CertCentral issued certificate ")
            && detail.contains("; downloading it failed: "),
        "{row}"
    );
    let table = crate::common::text(&env.certkeeper(&["status"]).await);
    assert!(!table.contains("to issue"), "{table}");
    assert_eq!(env.sandbox.count("POST", "/reissue"), 1);

    // The journal resumes where it stopped.
    let out = env.certkeeper(&["renew", "www"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", crate::common::text(&out));
    env.assert_installed_set_valid("www");
    assert_eq!(
        env.sandbox.count("POST", "/reissue"),
        1,
        "no second reissue"
    );
}

/// A 429 with `Retry-After: 7` is honoured by the journal's backoff (the configured backoff
/// is at most 2 s), not slept through inside the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sets_the_next_attempt() {
    let env = TestEnv::with(SandboxConfig {
        faults: vec![Fault::once(FaultKind::RateLimitAfter(7))],
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", ""));
    let before = certkeeper::model::unix_now();
    let outcome = env.drive("www").await;
    let Outcome::Failed {
        message, retry_at, ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert!(message.contains("429"), "{message}");
    assert!(
        retry_at >= before + 7,
        "retry at {retry_at}, {before} + 7 expected"
    );
    assert_eq!(
        env.sandbox.requests().len(),
        1,
        "nothing more was sent in the call"
    );
    let status = env.certkeeper(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(rows[0]["state"], "failed", "{}", rows[0]);
}

/// A sandbox with `fault`, and the error `renew www` fails with.
async fn failing_with(fault: Fault) -> (TestEnv, String) {
    let env = TestEnv::with(SandboxConfig {
        faults: vec![fault],
        ..SandboxConfig::default()
    })
    .await;
    env.write_config("", &env.cert("www", ""));
    let outcome = renew(&env, "www", false).await;
    let Outcome::Failed { message, .. } = outcome else {
        panic!("{outcome:?}");
    };
    (env, message)
}

/// Order info without `status` (documented as always there) is refused, naming the field and
/// the call; nothing is reissued on a guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_without_status_is_refused() {
    let (env, message) = failing_with(Fault::once(FaultKind::OrderWithoutStatus)).await;
    assert!(
        message.contains("GET /order/certificate/1001")
            && message.contains("missing field `status`"),
        "{message}"
    );
    assert_eq!(env.sandbox.count("POST", "/reissue"), 0);
}

/// A hostile error answer (terminal escapes, a forged log line, 600 KB) is kept as the code
/// and message CertCentral sent, escaped and cut short: the journal stays small, and neither
/// `status` nor the error carry a control character.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_error_is_escaped_and_cut() {
    let (env, message) = failing_with(Fault::times(FaultKind::HostileError, 10)).await;
    assert!(
        message.contains("invalid_request\\u{1b}]0;owned\\u{7}: bad\\n2026")
            && message.contains("(truncated)")
            && message.len() < 4096
            && !message.chars().any(char::is_control),
        "{}",
        &message[..message.len().min(400)]
    );
    let journal = std::fs::metadata(env.path("state/certs/www/journal.json")).expect("journal");
    assert!(
        journal.len() < 16 * 1024,
        "journal is {} bytes",
        journal.len()
    );
    let table = crate::common::text(&env.certkeeper(&["status"]).await);
    assert!(!table.contains('\u{1b}'), "{table}");
    assert!(table.contains("(truncated)"), "{table}");
}
