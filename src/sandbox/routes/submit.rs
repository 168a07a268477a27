//! Reissue and duplicate (certcentral-api.md §2), and the reissue and duplicate lists (§3.2,
//! §3.3).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use x509_parser::prelude::FromDer;

use super::orders::{find_order, thumbprint};
use super::{crlf, day, error, errors, json_body, lock, not_found, pem_crlf, platform_name, stamp};
use crate::sandbox::state::{NewSubmission, SubStatus, SubmitKind, now_s, order_end};
use crate::sandbox::{FaultKind, Shared};

pub(in crate::sandbox) async fn reissue(
    state: AxState<Shared>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    submit(state, order_id, body, SubmitKind::Reissue).await
}

pub(in crate::sandbox) async fn duplicate(
    state: AxState<Shared>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    submit(state, order_id, body, SubmitKind::Duplicate).await
}

/// The certificate fields of a request body.
pub(super) struct Fields {
    pub(super) common_name: String,
    pub(super) dns_names: Vec<String>,
    pub(super) csr: String,
    pub(super) server_platform: i64,
    pub(super) signature_hash: String,
}

/// Reads `certificate.*` as the reissue page documents it: `common_name`, `csr` and
/// `signature_hash` required; `dns_names` optional (blank entries, as in the docs' own example
/// `[""]`, dropped); `server_platform` optional, default -1 (the reissue seed).
pub(super) fn request_fields(body: &Value) -> Result<Fields, Box<Response>> {
    let cert = &body["certificate"];
    let mut missing = Vec::new();
    for field in ["common_name", "csr", "signature_hash"] {
        if cert.get(field).is_none_or(Value::is_null) {
            missing.push((
                format!("required_param:certificate.{field}"),
                format!("certificate.{field} is a required parameter."),
            ));
        }
    }
    if !missing.is_empty() {
        return Err(Box::new(errors(StatusCode::BAD_REQUEST, missing)));
    }
    let common_name = cert["common_name"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let mut dns_names: Vec<String> = Vec::new();
    for n in cert["dns_names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let n = n.trim().to_ascii_lowercase();
        if !n.is_empty() && n != common_name && !dns_names.contains(&n) {
            dns_names.push(n);
        }
    }
    let signature_hash = cert["signature_hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !["sha256", "sha384", "sha512"].contains(&signature_hash.as_str()) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_value:signature_hash",
            "signature_hash must be sha256, sha384 or sha512.",
        )));
    }
    Ok(Fields {
        common_name,
        dns_names,
        csr: cert["csr"].as_str().unwrap_or_default().to_owned(),
        server_platform: cert["server_platform"]["id"].as_i64().unwrap_or(-1),
        signature_hash,
    })
}

async fn submit(
    AxState(state): AxState<Shared>,
    order_key: String,
    body: Bytes,
    kind: SubmitKind,
) -> Response {
    // An unknown order is 404 before anything in the body is looked at.
    {
        let s = lock(&state);
        if find_order(&s, &order_key).is_none() {
            return not_found("order");
        }
    }
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let fields = match request_fields(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let spki = match csr_public_key(&fields.csr) {
        Ok(spki) => spki,
        Err(r) => return *r,
    };
    let skip_approval = body["skip_approval"].as_bool().unwrap_or(false);
    let validity_days = body["certificate"]["cert_validity"]["days"].as_u64();
    let mut names = vec![fields.common_name.clone()];
    names.extend(fields.dns_names.iter().cloned());

    let answer = {
        let mut s = lock(&state);
        s.tick();
        let Some(order) = find_order(&s, &order_key) else {
            return not_found("order");
        };
        let oid = order.id;
        let status = s.order_status(order);
        if !matches!(status.as_str(), "issued" | "approved" | "reissue_pending") {
            // Invented: CertCentral documents no code for an order status that forbids a
            // reissue (certcentral-api.md §5).
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_order_status",
                &format!("The order status {status:?} does not allow this request."),
            );
        }
        match kind {
            SubmitKind::Reissue => {
                if status == "reissue_pending" {
                    // Invented, as above.
                    return error(
                        StatusCode::BAD_REQUEST,
                        "order_reissue_pending",
                        "A reissue is already pending on this order.",
                    );
                }
                // cert_validity is honoured on Multi-year Plans only ("ignored for reissues
                // that are not associated with a Multi-year Plan", the reissue page).
                if let Some(days) = validity_days.filter(|_| order.multi_year_plan) {
                    let end = now_s().saturating_add(
                        i64::try_from(days)
                            .unwrap_or(i64::MAX)
                            .saturating_mul(86_400),
                    );
                    if end > order_end(&order.valid_till) {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "cert_validity_exceeds_order_validity",
                            "The certificate validity exceeds the order validity.",
                        );
                    }
                }
            }
            SubmitKind::Duplicate => {
                if !order.allow_duplicates {
                    // Invented, as above.
                    return error(
                        StatusCode::BAD_REQUEST,
                        "duplicates_not_allowed",
                        "Duplicates are not allowed for this order.",
                    );
                }
                // Every name must be on the order; a wildcard covers its subdomains (§2.2).
                let covered = |n: &String| {
                    order.dns_names.contains(n)
                        || order.dns_names.iter().any(|o| {
                            o.strip_prefix("*.").is_some_and(|base| {
                                n.split_once('.').is_some_and(|(_, rest)| rest == base)
                            })
                        })
                };
                if !names.iter().all(covered) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_dns_name_on_duplicate",
                        "Invalid DNS name on duplicate request. The DNS names must match what was on the original order.",
                    );
                }
                // "Duplicates require valid domain validation. If domain validation has
                // expired, reissue the certificate first" (DigiCert, dcv.md). The code is
                // invented.
                if !s.unvalidated(order, &names).is_empty() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "domain_validation_expired",
                        "Domain validation has expired for one or more domains on this order; reissue the certificate first.",
                    );
                }
            }
            SubmitKind::New => {}
        }
        let drop_answer = s
            .take_fault(|k| *k == FaultKind::DropSubmitResponse)
            .is_some();
        let i = s.submit(
            oid,
            kind,
            NewSubmission {
                // Duplicates take the current certificate's dates: no validity (§2.2).
                validity_days: validity_days.filter(|_| kind == SubmitKind::Reissue),
                csr_pem: fields.csr,
                spki,
                common_name: fields.common_name,
                dns_names: names,
                skip_approval,
                server_platform: fields.server_platform,
                signature_hash: fields.signature_hash,
            },
        );
        let sub = s.data.subs[i].clone();
        // The documented answers: `{"id","requests":[{"id"}]}`, and with skip_approval
        // `{"id","certificate_id"}` (the reissue seed).
        let mut answer = if skip_approval {
            json!({ "id": oid, "certificate_id": sub.cert_id })
        } else {
            json!({ "id": oid, "requests": [{ "id": sub.request_id }] })
        };
        // Issued at once: the chain, leaf first, ending with the root as DigiCert's duplicate
        // example and recorded answers do (Keyfactor's response models).
        if sub.status == SubStatus::Issued
            && let Some(c) = s.data.certs.get(&sub.cert_id)
        {
            answer["certificate_chain"] = json!([
                { "subject_common_name": c.common_name, "pem": served_leaf(c) },
                { "subject_common_name": "certkeeper Sandbox TLS ICA", "pem": crlf(&s.ca.intermediate_pem) },
                { "subject_common_name": "certkeeper Sandbox Root CA", "pem": crlf(&s.ca.root_pem) },
            ]);
        }
        // Validation needed: the random value, as in Keyfactor's and Infisical's models.
        if sub.awaiting_dcv
            && let Some(v) = s.random_value(oid)
        {
            answer["dcv_random_value"] = json!(v.value);
        }
        if drop_answer { None } else { Some(answer) }
    };
    match answer {
        Some(answer) => (StatusCode::CREATED, axum::Json(answer)).into_response(),
        // The request was accepted, but the answer is lost on the way: the status line goes
        // out, then the connection breaks in the body.
        None => {
            let broken = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("connection lost"))
            });
            Response::builder()
                .status(StatusCode::CREATED)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(broken))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

/// The leaf PEM as served: CRLF, cut in half under the `truncated-pem` fault.
pub(super) fn served_leaf(c: &crate::sandbox::state::Cert) -> String {
    let mut pem = pem_crlf("CERTIFICATE", &c.der);
    if c.truncated {
        pem.truncate(pem.len() / 2);
    }
    pem
}

/// Parses the CSR as CertCentral accepts it (PEM, possibly on one line), verifies its
/// self-signature, and returns its DER SubjectPublicKeyInfo.
pub(super) fn csr_public_key(text: &str) -> Result<Vec<u8>, Box<Response>> {
    let bad = |detail: String| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "csr_invalid_cannot_parse",
            &format!("The CSR could not be parsed: {detail}."),
        ))
    };
    let begin = "-----BEGIN CERTIFICATE REQUEST-----";
    let end = "-----END CERTIFICATE REQUEST-----";
    let start = text
        .find(begin)
        .ok_or_else(|| bad("no BEGIN CERTIFICATE REQUEST line".into()))?
        + begin.len();
    let stop = text[start..]
        .find(end)
        .ok_or_else(|| bad("no END CERTIFICATE REQUEST line".into()))?
        + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(format!("bad base64: {e}")))?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| bad(e.to_string()))?;
    csr.verify_signature()
        .map_err(|e| bad(format!("bad self-signature: {e}")))?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}

pub(in crate::sandbox) async fn list_reissues(
    state: AxState<Shared>,
    Path(order_id): Path<String>,
) -> Response {
    list(state, order_id, SubmitKind::Reissue)
}

pub(in crate::sandbox) async fn list_duplicates(
    state: AxState<Shared>,
    Path(order_id): Path<String>,
) -> Response {
    list(state, order_id, SubmitKind::Duplicate)
}

fn list(AxState(state): AxState<Shared>, order_key: String, kind: SubmitKind) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(oid) = find_order(&s, &order_key).map(|o| o.id) else {
        return not_found("order");
    };
    let certificates: Vec<Value> = s
        .data
        .subs
        .iter()
        .filter(|x| x.order_id == oid && x.kind == kind)
        .map(|x| {
            let issued = s.data.certs.get(&x.cert_id).filter(|_| x.status == SubStatus::Issued);
            let status = match (kind, x.status) {
                (_, SubStatus::Rejected) => "rejected",
                (SubmitKind::Duplicate, SubStatus::Issued) => "approved",
                (_, SubStatus::Issued) => "issued",
                _ => "pending",
            };
            let mut e = json!({
                "id": x.cert_id,
                "common_name": x.new.common_name,
                "dns_names": x.new.dns_names,
                "status": status,
                "date_created": stamp(x.created),
                "csr": x.new.csr_pem,
                "signature_hash": x.new.signature_hash,
                "server_platform": { "id": x.new.server_platform, "name": platform_name(x.new.server_platform) },
                "archived": 0,
            });
            if kind == SubmitKind::Duplicate {
                e["sub_id"] = json!(format!("{:03}", x.sub_id));
            }
            if let Some(c) = issued {
                e["serial_number"] = json!(c.serial);
                e["thumbprint"] = json!(thumbprint(&c.der));
                e["valid_from"] = json!(day(c.not_before));
                e["valid_till"] = json!(day(c.not_after));
                e["days_remaining"] = json!(((c.not_after - now_s()) / 86_400).max(0));
                if kind == SubmitKind::Reissue {
                    e["date_issued"] = json!(stamp(c.created));
                }
            }
            e
        })
        .collect();
    axum::Json(json!({ "certificates": certificates })).into_response()
}
