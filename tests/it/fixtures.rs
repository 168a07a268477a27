//! Every CertCentral JSON sample (tests/fixtures/certcentral, copied with their provenance
//! notes from certcentral-api.md's sources) deserializes with the client's types, and the
//! sandbox answers with the same shapes.

use std::path::PathBuf;

use certkeeper::certcentral::{ApiError, CertificateList, OrderInfo, SubmitResponse};
use serde::Deserialize;

use crate::common::{API_KEY, TestEnv, keys};

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/certcentral")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[derive(Deserialize)]
struct Envelope {
    errors: Vec<ApiError>,
}

#[test]
fn every_fixture_deserializes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certcentral");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let text = fixture(&name);
        seen += 1;
        match name.as_str() {
            // §3.1
            "order-info-issued-approved.json" => {
                let o: OrderInfo = serde_json::from_str(&text).expect(&name);
                assert_eq!(
                    (o.id, o.certificate.id, o.status.as_str()),
                    (123_456_789, Some(112_358), "approved")
                );
                assert_eq!(o.certificate.server_platform.id, Some(45));
                assert_eq!(o.certificate.dns_names, ["digicert.com"]);
            }
            // §3.1 (list orders: each entry has the order-info shape; "is_multi_year_plan": "1")
            "order-list-anonymized.json" => {
                #[derive(Deserialize)]
                struct List {
                    orders: Vec<OrderInfo>,
                }
                let l: List = serde_json::from_str(&text).expect(&name);
                assert!(
                    l.orders
                        .iter()
                        .all(|o| o.id > 0 && o.certificate.id.is_some())
                );
            }
            // §3.4: the embedded order
            "request-info-approved.json" => {
                let v: serde_json::Value = serde_json::from_str(&text).expect(&name);
                let o: OrderInfo = serde_json::from_value(v["order"].clone()).expect(&name);
                assert_eq!(o.id, 542_757);
            }
            // §2.1
            "reissue-response-minimal.json" => {
                let r: SubmitResponse = serde_json::from_str(&text).expect(&name);
                assert_eq!(
                    (r.id, r.requests[0].id, r.certificate_id),
                    (542_757, 1, None)
                );
            }
            // §3.2, §3.3
            "list-reissues-docs-example-item.json" | "list-duplicates.json" => {
                let l: CertificateList = serde_json::from_str(&text).expect(&name);
                assert!(
                    !l.certificates.is_empty()
                        && l.certificates
                            .iter()
                            .all(|c| c.id > 0 && !c.status.is_empty())
                );
            }
            // §1
            "account-details-200.json" => {
                let v: serde_json::Value = serde_json::from_str(&text).expect(&name);
                assert!(v["id"].is_u64());
            }
            // §5
            n if n.starts_with("error-") => {
                let e: Envelope = serde_json::from_str(&text).expect(&name);
                assert!(
                    e.errors
                        .iter()
                        .all(|e| !e.code.is_empty() && !e.message.is_empty()),
                    "{name}"
                );
            }
            other => panic!("fixture {other} has no test; add one"),
        }
    }
    assert_eq!(seen, 11);
}

/// The sandbox's answers carry the fields the documentation's examples have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_shapes_match_the_fixtures() {
    let env = TestEnv::new().await;
    let get = |path: String| async move {
        reqwest::Client::new()
            .get(path)
            .header("X-DC-DEVKEY", API_KEY)
            .send()
            .await
            .expect("get")
    };
    let order: serde_json::Value = get(format!("{}/order/certificate/1001", env.sandbox.url()))
        .await
        .json()
        .await
        .expect("json");
    let doc: serde_json::Value =
        serde_json::from_str(&fixture("order-info-issued-approved.json")).expect("fixture");
    for key in [
        "id",
        "certificate",
        "status",
        "date_created",
        "container",
        "product",
        "organization",
    ] {
        assert!(doc.get(key).is_some(), "fixture lacks {key}");
        if key != "container" {
            assert!(order.get(key).is_some(), "sandbox order info lacks {key}");
        }
    }
    for key in [
        "id",
        "serial_number",
        "common_name",
        "dns_names",
        "date_created",
        "valid_from",
        "valid_till",
        "csr",
        "server_platform",
        "signature_hash",
        "ca_cert",
    ] {
        assert!(
            doc["certificate"].get(key).is_some(),
            "fixture certificate lacks {key}"
        );
        assert!(
            order["certificate"].get(key).is_some(),
            "sandbox certificate lacks {key}"
        );
    }

    // Errors: the real 403 body for a bad key, byte for byte in meaning.
    let r = reqwest::Client::new()
        .get(format!("{}/order/certificate/1001", env.sandbox.url()))
        .header("X-DC-DEVKEY", "nope")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 403);
    let body: serde_json::Value = r.json().await.expect("json");
    let doc: serde_json::Value =
        serde_json::from_str(&fixture("error-403-access-denied-invalid-key.json"))
            .expect("fixture");
    assert_eq!(body, doc);

    // A reissue without a required field gives the real capture's code and message. (The
    // 2017 capture also lists certificate.server_platform, which DigiCert's reissue page now
    // documents as optional, default -1: the sandbox follows the page.)
    let r = reqwest::Client::new()
        .post(format!(
            "{}/order/certificate/1001/reissue",
            env.sandbox.url()
        ))
        .header("X-DC-DEVKEY", API_KEY)
        .json(&serde_json::json!({"certificate": {"common_name": "example.test", "csr": "x"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    let doc: serde_json::Value =
        serde_json::from_str(&fixture("error-400-reissue-missing-required-params.json"))
            .expect("fixture");
    let hash_error = doc["errors"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| e["code"] == "required_param:certificate.signature_hash")
        })
        .expect("the fixture has the signature_hash entry");
    assert_eq!(body["errors"], serde_json::json!([hash_error]));

    // List entries carry the documented keys.
    let list: serde_json::Value = get(format!(
        "{}/order/certificate/1001/reissue",
        env.sandbox.url()
    ))
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(keys(&list), ["certificates"]);
}

/// The fields DigiCert documents as always present are required: each removed from its
/// fixture, the answer is refused with an error naming the field.
#[test]
fn a_missing_required_field_is_refused() {
    fn without<T: serde::de::DeserializeOwned>(text: &str, pointer: &str, field: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(text).expect("fixture");
        v.pointer_mut(pointer)
            .and_then(serde_json::Value::as_object_mut)
            .expect("object")
            .remove(field)
            .expect("the fixture has the field");
        match serde_json::from_value::<T>(v) {
            Ok(_) => panic!("accepted without {field}"),
            Err(e) => e.to_string(),
        }
    }
    let order = fixture("order-info-issued-approved.json");
    for field in ["id", "status", "certificate"] {
        let e = without::<OrderInfo>(&order, "", field);
        assert!(e.contains(&format!("missing field `{field}`")), "{e}");
    }
    let submit = fixture("reissue-response-minimal.json");
    let e = without::<SubmitResponse>(&submit, "", "id");
    assert!(e.contains("missing field `id`"), "{e}");
    let list = fixture("list-duplicates.json");
    for field in ["id", "status"] {
        let e = without::<CertificateList>(&list, "/certificates/0", field);
        assert!(e.contains(&format!("missing field `{field}`")), "{e}");
    }
}
