//! The HTTP face of the sandbox: CertCentral's paths, JSON shapes, status codes and error
//! envelope (certcentral-api.md §1–§5), written from the document, not from the client.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::FromDer;

use super::{FaultKind, NewSubmission, Shared, SubStatus, SubmitKind, lock};

pub(super) fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/order/certificate/{order_id}", get(order_info))
        .route(
            "/order/certificate/{order_id}/reissue",
            get(list_reissues).post(reissue),
        )
        .route(
            "/order/certificate/{order_id}/duplicate",
            get(list_duplicates).post(duplicate),
        )
        .route(
            "/order/certificate/{order_id}/status",
            axum::routing::put(update_status),
        )
        .route(
            "/certificate/{cert_id}/download/format/{format}",
            get(download),
        )
        .route("/certificate/{cert_id}/chain", get(chain))
        .route("/account", get(account))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found|route", "Route not found.") });
    Router::new()
        .nest("/services/v2", api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found|route", "Route not found.") })
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Authentication, fault injection and the request log, for every call.
async fn gate(AxState(state): AxState<Shared>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let key = req
        .headers()
        .get("X-DC-DEVKEY")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (authorized, fault) = {
        let mut s = lock(&state);
        let ok = match (&s.cfg.api_key, &key) {
            (Some(want), Some(got)) => want == got,
            (None, Some(got)) => !got.trim().is_empty(),
            (_, None) => false,
        };
        let fault = match &key {
            Some(k) if ok && s.over_limit(k) => Some(FaultKind::RateLimit),
            _ if ok => s.take_transport_fault(),
            _ => None,
        };
        (ok, fault)
    };
    let response = if !authorized {
        // The real answer to a bad key is 403, not 401 (certcentral-api.md §1).
        error(
            StatusCode::FORBIDDEN,
            "access_denied|access_denied_invalid_key",
            "Access denied due to access_denied_invalid_key.",
        )
    } else {
        match fault {
            Some(FaultKind::RateLimit) => rate_limited(None),
            Some(FaultKind::RateLimitAfter(secs)) => rate_limited(Some(secs)),
            Some(FaultKind::ServerError(code)) => error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "server_error",
                "The service is temporarily unavailable.",
            ),
            Some(FaultKind::Slow(d)) => {
                tokio::time::sleep(d).await;
                next.run(req).await
            }
            _ => next.run(req).await,
        }
    };
    lock(&state).log.push(super::RequestRecord {
        method,
        path,
        status: response.status().as_u16(),
    });
    response
}

fn rate_limited(retry_after: Option<u64>) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "request_limit_exceeded",
        "Service unavailable, please limit request volume",
    );
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errors": [{ "code": code, "message": message }] })),
    )
        .into_response()
}

fn errors(status: StatusCode, list: Vec<(String, String)>) -> Response {
    let list: Vec<Value> = list
        .into_iter()
        .map(|(c, m)| json!({ "code": c, "message": m }))
        .collect();
    (status, axum::Json(json!({ "errors": list }))).into_response()
}

/// A JSON request body, or CertCentral's answer to a malformed one.
fn json_body(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request_format",
            "The request body could not be parsed as JSON.",
        ))
    })
}

fn not_found(what: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("not_found|{what}"),
        &format!("The {what} was not found."),
    )
}

fn day(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

fn stamp(t: OffsetDateTime) -> String {
    // CertCentral writes offsets as +00:00, not Z (§8).
    t.format(&Rfc3339)
        .map(|s| s.replace('Z', "+00:00"))
        .unwrap_or_default()
}

fn parse_id(s: &str) -> Option<u64> {
    s.parse().ok()
}

async fn order_info(AxState(state): AxState<Shared>, Path(order_id): Path<String>) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(order) = parse_id(&order_id).and_then(|id| s.orders.get(&id)) else {
        return not_found("order");
    };
    let Some(cert) = s.certs.get(&order.current_cert) else {
        return not_found("certificate");
    };
    let requests: Vec<Value> = s
        .subs
        .iter()
        .filter(|x| x.order_id == order.id)
        .map(|x| json!({ "id": x.request_id, "date": stamp(x.created), "type": match x.kind { SubmitKind::Reissue => "reissue", SubmitKind::Duplicate => "duplicate" }, "status": request_status(x.status) }))
        .collect();
    let now = OffsetDateTime::now_utc();
    let mut body = json!({
        "id": order.id,
        "certificate": {
            "id": cert.id,
            "serial_number": cert.serial,
            "common_name": cert.common_name,
            "dns_names": cert.dns_names.iter().chain(order.companion.iter().filter(|c| !cert.dns_names.contains(c))).collect::<Vec<_>>(),
            "date_created": stamp(cert.created),
            "valid_from": day(cert.not_before),
            "valid_till": day(cert.not_after),
            "days_remaining": (cert.not_after - now).whole_days().max(0),
            "csr": cert.csr,
            "server_platform": { "id": cert.server_platform, "name": platform_name(cert.server_platform) },
            "signature_hash": cert.signature_hash,
            "ca_cert": { "id": "SANDBOXICA", "name": "certkeeper Sandbox TLS ICA" },
        },
        "status": order.status,
        "date_created": stamp(order.created),
        "organization": [],
        "order_valid_from": day(order.created),
        "order_valid_till": order.valid_till.to_string(),
        "auto_reissue": u8::from(order.auto_reissue),
        "allow_duplicates": order.allow_duplicates,
        "product": { "name_id": "ssl_plus", "name": "Standard SSL", "type": "ssl_certificate" },
        "requests": requests,
    });
    if order.valid_till > now.date() + Duration::from_secs(400 * 86_400) {
        body["is_multi_year_plan"] = json!("1");
    }
    axum::Json(body).into_response()
}

fn request_status(s: SubStatus) -> &'static str {
    match s {
        SubStatus::Pending => "pending",
        SubStatus::Approved | SubStatus::Issued => "approved",
        SubStatus::Rejected => "rejected",
    }
}

fn platform_name(id: i64) -> &'static str {
    match id {
        2 => "Apache",
        45 => "nginx",
        _ => "OTHER",
    }
}

async fn reissue(state: AxState<Shared>, Path(order_id): Path<String>, body: Bytes) -> Response {
    submit(state, order_id, body, SubmitKind::Reissue).await
}

async fn duplicate(state: AxState<Shared>, Path(order_id): Path<String>, body: Bytes) -> Response {
    submit(state, order_id, body, SubmitKind::Duplicate).await
}

async fn submit(
    AxState(state): AxState<Shared>,
    order_id: String,
    body: Bytes,
    kind: SubmitKind,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let cert = &body["certificate"];
    let mut missing = Vec::new();
    for field in ["common_name", "csr", "server_platform", "signature_hash"] {
        if cert.get(field).is_none_or(Value::is_null) {
            missing.push((
                format!("required_param:certificate.{field}"),
                format!("certificate.{field} is a required parameter."),
            ));
        }
    }
    if !missing.is_empty() {
        return errors(StatusCode::BAD_REQUEST, missing);
    }
    let common_name = cert["common_name"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let mut dns_names: Vec<String> = vec![common_name.clone()];
    for n in cert["dns_names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let n = n.trim().to_ascii_lowercase();
        if !n.is_empty() && !dns_names.contains(&n) {
            dns_names.push(n);
        }
    }
    let hash = cert["signature_hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !["sha256", "sha384", "sha512"].contains(&hash.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value:signature_hash",
            "signature_hash must be sha256, sha384 or sha512.",
        );
    }
    let platform = cert["server_platform"]["id"].as_i64().unwrap_or(-1);
    let csr_text = cert["csr"].as_str().unwrap_or_default().to_owned();
    let spki = match csr_public_key(&csr_text) {
        Ok(spki) => spki,
        Err(detail) => {
            return error(
                StatusCode::BAD_REQUEST,
                "csr_invalid_cannot_parse",
                &format!("The CSR could not be parsed: {detail}."),
            );
        }
    };
    let skip_approval = body["skip_approval"].as_bool().unwrap_or(false);
    let validity_days = cert["cert_validity"]["days"].as_u64();

    let drop_answer = {
        let mut s = lock(&state);
        s.tick();
        let Some(order) = parse_id(&order_id).and_then(|id| s.orders.get(&id)) else {
            return not_found("order");
        };
        let oid = order.id;
        if !matches!(
            order.status.as_str(),
            "issued" | "approved" | "reissue_pending"
        ) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_order_status",
                &format!(
                    "The order status {:?} does not allow this request.",
                    order.status
                ),
            );
        }
        if let Some(days) = validity_days {
            let end = OffsetDateTime::now_utc().date() + Duration::from_secs(days * 86_400);
            if end > order.valid_till {
                return error(
                    StatusCode::BAD_REQUEST,
                    "cert_validity_exceeds_order_validity",
                    "The certificate validity exceeds the order validity.",
                );
            }
        }
        match kind {
            SubmitKind::Reissue => {
                if s.subs.iter().any(|x| {
                    x.order_id == oid
                        && x.kind == SubmitKind::Reissue
                        && matches!(x.status, SubStatus::Pending | SubStatus::Approved)
                }) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "order_reissue_pending",
                        "A reissue is already pending on this order.",
                    );
                }
            }
            SubmitKind::Duplicate => {
                if !order.allow_duplicates {
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
                if !dns_names.iter().all(covered) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_dns_name_on_duplicate",
                        "Invalid DNS name on duplicate request. The DNS names must match what was on the original order.",
                    );
                }
            }
        }
        let drop_answer = s
            .take_fault(|k| *k == FaultKind::DropSubmitResponse)
            .is_some();
        let i = s.submit(
            oid,
            kind,
            NewSubmission {
                validity_days,
                csr_pem: csr_text,
                spki,
                common_name,
                dns_names,
                skip_approval,
                server_platform: platform,
                signature_hash: hash,
            },
        );
        let sub = &s.subs[i];
        let mut answer = json!({ "id": oid, "requests": [{ "id": sub.request_id, "status": request_status(sub.status) }] });
        if matches!(sub.status, SubStatus::Approved | SubStatus::Issued) {
            answer["certificate_id"] = json!(sub.cert_id);
        }
        if sub.status == SubStatus::Issued
            && let Some(c) = s.certs.get(&sub.cert_id)
        {
            answer["certificate_chain"] = json!([
                { "subject_common_name": c.common_name, "pem": c.served_leaf() },
                { "subject_common_name": "certkeeper Sandbox TLS ICA", "pem": s.ca.intermediate_pem },
            ]);
        }
        if drop_answer { None } else { Some(answer) }
    };
    match drop_answer {
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

/// Parses the CSR as CertCentral accepts it (PEM, possibly on one line), verifies its
/// self-signature, and returns its DER SubjectPublicKeyInfo.
fn csr_public_key(text: &str) -> Result<Vec<u8>, String> {
    let begin = "-----BEGIN CERTIFICATE REQUEST-----";
    let end = "-----END CERTIFICATE REQUEST-----";
    let start = text
        .find(begin)
        .ok_or("no BEGIN CERTIFICATE REQUEST line")?
        + begin.len();
    let stop = text[start..]
        .find(end)
        .ok_or("no END CERTIFICATE REQUEST line")?
        + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("bad base64: {e}"))?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| e.to_string())?;
    csr.verify_signature()
        .map_err(|e| format!("bad self-signature: {e}"))?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}

async fn list_reissues(state: AxState<Shared>, Path(order_id): Path<String>) -> Response {
    list(state, order_id, SubmitKind::Reissue)
}

async fn list_duplicates(state: AxState<Shared>, Path(order_id): Path<String>) -> Response {
    list(state, order_id, SubmitKind::Duplicate)
}

fn list(AxState(state): AxState<Shared>, order_id: String, kind: SubmitKind) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(oid) = parse_id(&order_id).filter(|id| s.orders.contains_key(id)) else {
        return not_found("order");
    };
    let certificates: Vec<Value> = s
        .subs
        .iter()
        .filter(|x| x.order_id == oid && x.kind == kind)
        .map(|x| {
            let issued = s.certs.get(&x.cert_id).filter(|_| x.status == SubStatus::Issued);
            let status = match (kind, x.status) {
                (_, SubStatus::Rejected) => "rejected",
                (SubmitKind::Reissue, SubStatus::Issued) => "issued",
                // Issued duplicates show as "approved" in every example (§3.3).
                (SubmitKind::Duplicate, SubStatus::Issued) => "approved",
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
                e["valid_from"] = json!(day(c.not_before));
                e["valid_till"] = json!(day(c.not_after));
                e["days_remaining"] = json!((c.not_after - OffsetDateTime::now_utc()).whole_days().max(0));
                if kind == SubmitKind::Reissue {
                    e["date_issued"] = json!(stamp(c.created));
                }
            }
            e
        })
        .collect();
    axum::Json(json!({ "certificates": certificates })).into_response()
}

async fn update_status(
    AxState(state): AxState<Shared>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if body["status"].as_str() != Some("canceled") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value:status",
            "Only canceling a pending request is supported.",
        );
    }
    let mut s = lock(&state);
    s.tick();
    let Some(oid) = parse_id(&order_id).filter(|id| s.orders.contains_key(id)) else {
        return not_found("order");
    };
    let mut canceled = false;
    for x in s.subs.iter_mut().filter(|x| {
        x.order_id == oid && matches!(x.status, SubStatus::Pending | SubStatus::Approved)
    }) {
        x.status = SubStatus::Rejected;
        canceled = true;
    }
    if !canceled {
        return error(
            StatusCode::BAD_REQUEST,
            "no_pending_request",
            "The order has no pending request to cancel.",
        );
    }
    if let Some(o) = s.orders.get_mut(&oid) {
        o.status = "issued".into();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn download(
    AxState(state): AxState<Shared>,
    Path((cert_id, format)): Path<(String, String)>,
) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(c) = parse_id(&cert_id).and_then(|id| s.certs.get(&id)) else {
        return not_found("certificate");
    };
    let pem = match format.as_str() {
        "pem_all" => format!(
            "{}{}{}",
            c.served_leaf(),
            s.ca.intermediate_pem,
            s.ca.root_pem
        ),
        "pem_noroot" => format!("{}{}", c.served_leaf(), s.ca.intermediate_pem),
        "pem_nointermediate" => c.served_leaf(),

        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_value:format",
                "The sandbox serves pem_all, pem_noroot and pem_nointermediate.",
            );
        }
    };
    ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response()
}

async fn chain(AxState(state): AxState<Shared>, Path(cert_id): Path<String>) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(c) = parse_id(&cert_id).and_then(|id| s.certs.get(&id)) else {
        return not_found("certificate");
    };
    axum::Json(json!({ "intermediates": [
        { "subject_common_name": c.common_name, "pem": c.served_leaf() },
        { "subject_common_name": "certkeeper Sandbox TLS ICA", "pem": s.ca.intermediate_pem },
    ]}))
    .into_response()
}

async fn account() -> Response {
    axum::Json(json!({ "id": 1, "primary_organization_name": "certkeeper sandbox", "cert_central_type": "sandbox" })).into_response()
}
