//! The HTTP face of the sandbox: CertCentral's paths, JSON shapes, status codes and error
//! envelope (certcentral-api.md §1–§5, dcv.md), written from the documents, not from the
//! client. One file per resource:
//!
//! - [`orders`]: order info (by id, serial or thumbprint), list orders, new orders, order
//!   status, auto-reissue;
//! - [`submit`]: reissue and duplicate, and their lists;
//! - [`certs`]: downloads in every format, the chain, revoke;
//! - [`requests`]: request info and status;
//! - [`dcv`]: the random value, the method, `check-dcv`, domain info.
//!
//! Conventions: timestamps have whole seconds with `+00:00` (as DigiCert writes them); PEM
//! answers use CRLF line endings (a real recorded chain does); every error is
//! `{"errors":[{"code","message"}]}`.

mod certs;
mod dcv;
mod orders;
mod requests;
mod submit;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{FaultKind, Shared, lock, save};

pub(super) use dcv::poll_validations;

pub(super) fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/order/certificate", get(orders::list))
        .route(
            "/order/certificate/{order_id}",
            get(orders::info).post(orders::create),
        )
        .route(
            "/order/certificate/{order_id}/reissue",
            get(submit::list_reissues).post(submit::reissue),
        )
        .route(
            "/order/certificate/{order_id}/duplicate",
            get(submit::list_duplicates).post(submit::duplicate),
        )
        .route(
            "/order/certificate/{order_id}/status",
            put(orders::update_status),
        )
        .route(
            "/order/certificate/{order_id}/auto-reissue",
            put(orders::auto_reissue),
        )
        .route(
            "/order/certificate/{order_id}/dcv-random-value",
            put(dcv::random_value),
        )
        .route("/order/certificate/{order_id}/dcv-method", put(dcv::method))
        .route("/order/certificate/{order_id}/check-dcv", put(dcv::check))
        .route("/domain/{domain_id}", get(dcv::domain_info))
        .route(
            "/certificate/{cert_id}/download/format/{format}",
            get(certs::download),
        )
        .route(
            "/certificate/{cert_id}/download/platform",
            get(certs::download_platform_default),
        )
        .route(
            "/certificate/{cert_id}/download/platform/{platform}",
            get(certs::download_platform),
        )
        .route(
            "/certificate/download/order/{order_id}/format/{format}",
            get(certs::download_by_order),
        )
        .route("/certificate/{cert_id}/chain", get(certs::chain))
        .route("/certificate/{cert_id}/revoke", put(certs::revoke))
        .route("/request/{request_id}", get(requests::info))
        .route("/request/{request_id}/status", put(requests::update_status))
        .route("/account", get(account))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found|route", "Route not found.") });
    Router::new()
        .nest("/services/v2", api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found|route", "Route not found.") })
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Authentication, fault injection, the request log and persistence, for every call.
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
            _ if ok && path.contains("/download/") => s
                .take_fault(|k| matches!(k, FaultKind::SlowDownload(_)))
                .or_else(|| s.take_transport_fault()),
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
            Some(FaultKind::Slow(d) | FaultKind::SlowDownload(d)) => {
                tokio::time::sleep(d).await;
                next.run(req).await
            }
            Some(FaultKind::EndlessBody) => endless(),
            Some(FaultKind::HostileError) => error(
                StatusCode::BAD_REQUEST,
                "invalid_request\u{1b}]0;owned\u{7}",
                &format!(
                    "bad\n2026-01-01T00:00:00Z  INFO renewal complete cert=www\u{1b}[2J{}",
                    "x".repeat(600_000)
                ),
            ),
            _ => next.run(req).await,
        }
    };
    lock(&state).log.push(super::RequestRecord {
        method,
        path,
        status: response.status().as_u16(),
    });
    save(&state);
    response
}

/// A 200 whose body never ends.
fn endless() -> Response {
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let stream = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
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
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
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

fn datetime(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix.clamp(0, 253_402_300_799))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `yyyy-MM-dd` (certcentral-api.md §8).
fn day(unix: i64) -> String {
    datetime(unix).date().to_string()
}

/// `2018-10-16T20:05:28+00:00`: whole seconds, offset written out (§8).
fn stamp(unix: i64) -> String {
    let t = datetime(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_id(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// PEM with CRLF line endings, as CertCentral serves it.
fn pem_crlf(label: &str, der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new(label, der),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::CRLF),
    )
}

/// A PEM text re-encoded with CRLF line endings.
fn crlf(pem_text: &str) -> String {
    ::pem::parse_many(pem_text)
        .map(|blocks| {
            blocks
                .iter()
                .map(|b| pem_crlf(b.tag(), b.contents()))
                .collect()
        })
        .unwrap_or_else(|_| pem_text.to_owned())
}

fn platform_name(id: i64) -> &'static str {
    match id {
        2 => "Apache",
        45 => "nginx",
        _ => "OTHER",
    }
}

/// The sandbox's organization (order info has an object; list orders documents `[]` for
/// some orders).
fn organization() -> Value {
    json!({ "id": ORGANIZATION_ID, "name": "certkeeper sandbox", "display_name": "certkeeper sandbox", "is_active": true })
}

/// The organization every sandbox order belongs to (`filters[organization_id]`).
pub const ORGANIZATION_ID: u64 = 5;

async fn account() -> Response {
    axum::Json(json!({ "id": 1, "primary_organization_name": "certkeeper sandbox", "cert_central_type": "sandbox" })).into_response()
}
