//! The sandbox as a CertCentral stand-in others can trust: DigiCert's documented examples
//! (the seeds' request bodies, the documented answers' shapes) and two third-party
//! CertCentral clients run for real against it, installed by .ci/run from PyPI by exact
//! version into `target/test-tools/` (never copied into the repository).
//!
//! Third-party bugs are documented here, not worked around in the sandbox:
//! - Lemur cancels an order with `"CANCELED"`; CertCentral documents `"canceled"`, so the
//!   sandbox answers 400 and Lemur raises "Failed to cancel pending certificate".
//! - certmesh reads a `pem_all` download as a ZIP archive; CertCentral serves `pem_all` as one
//!   PEM file (the ZIP formats are `default`, `default_pem`, `apache`), so certmesh's
//!   `order_and_await_certificate` fails at its download step.

use std::path::PathBuf;
use std::process::Command;

use certkeeper::sandbox::{OrderSpec, Sandbox, SandboxConfig};
use serde_json::{Value, json};

use crate::common::{API_KEY, TestEnv, keys, openssl};

fn venv(name: &str) -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/test-tools/{name}/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run ./.ci/run, which installs the third-party clients from PyPI",
        python.display()
    );
    python
}

/// Runs a contract script and reads the JSON object it prints.
fn run_script(venv_name: &str, script: &str, args: &[&str]) -> Value {
    let out = Command::new(venv(venv_name))
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/contract")
                .join(script),
        )
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"))
}

async fn call(
    env: &TestEnv,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", env.sandbox.url()))
        .header("X-DC-DEVKEY", API_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ctype, json)
}

fn csr(names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    certkeeper::crypto::csr(
        &key,
        names[0],
        &names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
    )
    .expect("csr")
}

/// The seeds' request bodies and the documented answers' shapes: the reissue example with
/// `dns_names: [""]` and no server_platform (Keyfactor's plugin and a Terraform provider omit
/// it) answers `{"id","requests":[{"id"}]}`; with skip_approval `{"id","certificate_id"}`
/// (the reissue page); the duplicate example (platform 45) is accepted; timestamps have whole
/// seconds; PEM answers use CRLF; ids live in disjoint spaces; an unknown order is 404 before
/// the CSR is looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_examples() {
    let mut slow: OrderSpec = "1002:slow.example.test".parse().expect("order");
    slow.dns_names.push("sub.slow.example.test".into());
    let env = TestEnv::with(SandboxConfig {
        orders: vec![
            "1001:example.test,www.example.test".parse().expect("order"),
            slow,
        ],
        approval_delay: std::time::Duration::from_secs(3600),
        ..SandboxConfig::default()
    })
    .await;
    // The reissue seed (002), as written: an empty common name is filled, dns_names [""].
    let body = json!({ "certificate": { "common_name": "example.test", "dns_names": [""], "csr": csr(&["example.test"]), "signature_hash": "sha256" } });
    let (status, _, answer) = call(
        &env,
        reqwest::Method::POST,
        "/order/certificate/1001/reissue",
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(keys(&answer), ["id", "requests"]);
    assert_eq!(keys(&answer["requests"][0]), ["id"]);
    let request_id = answer["requests"][0]["id"].as_u64().expect("request id");

    // The order shows the reissue pending (approval), with has_pending_request.
    let (_, _, order) = call(&env, reqwest::Method::GET, "/order/certificate/1001", None).await;
    assert_eq!(
        (
            order["status"].clone(),
            order["has_pending_request"].clone()
        ),
        (json!("reissue_pending"), json!(true))
    );
    assert!(
        order["organization"].is_object(),
        "order info has an organization object"
    );
    let stamp = order["date_created"].as_str().expect("date");
    assert!(
        stamp.len() == 25 && stamp.ends_with("+00:00") && !stamp.contains('.'),
        "whole seconds, offset written out: {stamp}"
    );
    let cert_id = order["certificate"]["id"].as_u64().expect("cert id");
    assert!(
        cert_id >= 20_000_001 && (9_000_001..20_000_000).contains(&request_id),
        "disjoint ids: order 1001, certificate {cert_id}, request {request_id}"
    );

    // The duplicate seed (001): platform 45, skip_approval: {"id","certificate_id"}; issued
    // at once, so the chain comes too, ending with the root.
    let (status, _, answer) = call(
        &env,
        reqwest::Method::POST,
        "/order/certificate/1002/duplicate",
        Some(json!({ "certificate": { "common_name": "slow.example.test", "dns_names": ["sub.slow.example.test"], "csr": csr(&["slow.example.test", "sub.slow.example.test"]), "server_platform": { "id": 45 }, "signature_hash": "sha256" }, "skip_approval": true })),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(keys(&answer), ["certificate_chain", "certificate_id", "id"]);
    let chain = answer["certificate_chain"].as_array().expect("chain");
    assert_eq!(chain.len(), 3);
    assert_eq!(
        chain[2]["subject_common_name"],
        "certkeeper Sandbox Root CA"
    );
    assert!(
        chain[0]["pem"].as_str().is_some_and(|p| p.contains("\r\n")),
        "CRLF"
    );

    // Unknown order: 404 first, whatever the body.
    let (status, _, answer) = call(
        &env,
        reqwest::Method::POST,
        "/order/certificate/4242/reissue",
        Some(json!({"certificate": {}})),
    )
    .await;
    assert_eq!(
        (status, answer["errors"][0]["code"].clone()),
        (404, json!("not_found|order"))
    );

    // Order lookup by the primary certificate's serial and thumbprint.
    let serial = order["certificate"]["serial_number"]
        .as_str()
        .expect("serial")
        .to_owned();
    let thumb = order["certificate"]["thumbprint"]
        .as_str()
        .expect("thumbprint")
        .to_owned();
    for key in [serial.clone(), thumb.to_ascii_lowercase()] {
        let (status, _, found) = call(
            &env,
            reqwest::Method::GET,
            &format!("/order/certificate/{key}"),
            None,
        )
        .await;
        assert_eq!((status, found["id"].clone()), (200, json!(1001)), "{key}");
    }

    // List orders: filters and pages.
    let (_, _, list) = call(
        &env,
        reqwest::Method::GET,
        "/order/certificate?filters[common_name]=slow&limit=1&offset=0",
        None,
    )
    .await;
    assert_eq!(list["page"], json!({ "total": 1, "limit": 1, "offset": 0 }));
    assert_eq!(list["orders"][0]["id"], 1002);

    // Request info, then approval through the request status.
    let (_, _, info) = call(
        &env,
        reqwest::Method::GET,
        &format!("/request/{request_id}"),
        None,
    )
    .await;
    assert_eq!(
        (info["type"].clone(), info["status"].clone()),
        (json!("reissue"), json!("pending"))
    );
    let (status, _, _) = call(
        &env,
        reqwest::Method::PUT,
        &format!("/request/{request_id}/status"),
        Some(json!({ "status": "approved", "processor_comment": "ok" })),
    )
    .await;
    assert_eq!(status, 204);
    let (_, _, order) = call(&env, reqwest::Method::GET, "/order/certificate/1001", None).await;
    assert_eq!(order["status"], "issued");

    // Downloads: by order, p7b (PKCS#7 that openssl reads), default (a ZIP of three files).
    let (status, ctype, pem_all) = call(
        &env,
        reqwest::Method::GET,
        "/certificate/download/order/1001/format/pem_all",
        None,
    )
    .await;
    assert_eq!((status, ctype.as_str()), (200, "application/x-pem-file"));
    assert_eq!(
        pem_all
            .as_str()
            .expect("pem")
            .matches("BEGIN CERTIFICATE")
            .count(),
        3
    );
    let (_, ctype, p7b) = call(
        &env,
        reqwest::Method::GET,
        "/certificate/download/order/1001/format/p7b",
        None,
    )
    .await;
    assert_eq!(ctype, "application/x-pkcs7-certificates");
    let p7 = env.path("chain.p7b");
    std::fs::write(&p7, p7b.as_str().expect("p7b")).expect("write");
    let printed = openssl(&[
        "pkcs7",
        "-in",
        crate::common::path_str(&p7),
        "-print_certs",
        "-noout",
    ]);
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout)
            .matches("subject=")
            .count(),
        3
    );
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/certificate/download/order/1001/format/default",
            env.sandbox.url()
        ))
        .header("X-DC-DEVKEY", API_KEY)
        .send()
        .await
        .expect("zip");
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let zip = resp.bytes().await.expect("bytes");
    assert!(zip.starts_with(b"PK\x03\x04"), "a ZIP archive");
    assert_eq!(
        zip.windows(4).filter(|w| *w == b"PK\x01\x02").count(),
        3,
        "three files"
    );
}

/// `--state DIR`: the CA, the orders and a pending request survive a restart of the sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || SandboxConfig {
        orders: vec!["1001:example.test".parse().expect("order")],
        approval_delay: std::time::Duration::from_secs(3600),
        state_dir: Some(dir.path().join("sandbox")),
        ..SandboxConfig::default()
    };
    let first = Sandbox::start("127.0.0.1:0".parse().expect("addr"), config())
        .await
        .expect("start");
    let root = first.root_pem();
    let body = json!({ "certificate": { "common_name": "example.test", "csr": csr(&["example.test"]), "signature_hash": "sha256" } });
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/order/certificate/1001/reissue", first.url()))
        .header("X-DC-DEVKEY", "k")
        .json(&body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let request_id = resp["requests"][0]["id"].clone();
    drop(first);
    let second = Sandbox::start("127.0.0.1:0".parse().expect("addr"), config())
        .await
        .expect("restart");
    assert_eq!(second.root_pem(), root, "the same root: trusted once");
    let info: Value = reqwest::Client::new()
        .get(format!("{}/request/{}", second.url(), request_id))
        .header("X-DC-DEVKEY", "k")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (info["id"].clone(), info["status"].clone()),
        (request_id, json!("pending"))
    );
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::metadata(dir.path().join("sandbox/intermediate.key")).expect("key");
    assert_eq!(key.mode() & 0o777, 0o600);
}

/// Netflix Lemur's DigiCert issuer and source plugins against the sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lemur_digicert_plugin() {
    let env = TestEnv::new().await;
    let base = format!("http://{}", env.sandbox.addr());
    let out = tokio::task::spawn_blocking(move || {
        run_script("py-lemur", "lemur_digicert.py", &[&base, API_KEY, "1001"])
    })
    .await
    .expect("script");
    let create = &out["create"];
    assert!(
        create["certificate_id"]
            .as_u64()
            .is_some_and(|id| id >= 20_000_001),
        "{out}"
    );
    assert_eq!(create["leaf_matches_key"], true, "{out}");
    assert_eq!(
        create["names"],
        json!(["lemur.example.test", "www.lemur.example.test"]),
        "{out}"
    );
    assert!(
        create["chain_subject"]
            .as_str()
            .is_some_and(|s| s.contains("certkeeper Sandbox TLS ICA")),
        "{out}"
    );
    assert_eq!(out["ordered"]["has_body"], true, "{out}");
    // Lemur's "CANCELED" (a Lemur bug: CertCentral documents "canceled").
    assert!(
        out["cancel"]
            .as_str()
            .is_some_and(|s| s.contains("Failed to cancel pending certificate")),
        "{out}"
    );
    assert_eq!(
        out["source"],
        json!(["example.test", "lemur.example.test"]),
        "{out}"
    );
    assert_eq!(
        out["source_chains"],
        json!([2, 2]),
        "intermediate and root: {out}"
    );
}

/// certmesh's DigiCert client against the sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certmesh_digicert_client() {
    let env = TestEnv::new().await;
    let url = env.sandbox.url();
    let out = tokio::task::spawn_blocking(move || {
        run_script(
            "py-certmesh",
            "certmesh_digicert.py",
            &[&url, API_KEY, "1001"],
        )
    })
    .await
    .expect("script");
    assert_eq!(out["listed"], json!([1001]), "{out}");
    assert_eq!(out["search_cn"], json!([1001]), "{out}");
    assert_eq!(out["search_serial"], json!([1001]), "{out}");
    // certmesh omits skip_approval; with no approval delay the sandbox issues at once: the
    // request envelope plus the chain (Keyfactor's DuplicateResponse shape).
    assert_eq!(
        out["duplicate"],
        json!(["certificate_chain", "id", "requests"]),
        "{out}"
    );
    assert!(
        out["revoke"]
            .as_array()
            .is_some_and(|k| k.contains(&json!("status"))),
        "{out}"
    );
    // certmesh reads pem_all as a ZIP (a certmesh bug): its download step fails.
    assert!(
        out["order"].as_str().is_some_and(|s| s.contains("ZIP")),
        "{out}"
    );
}
