//! Domain control validation (dcv.md): the order's random value, its DCV method, `check-dcv`,
//! domain info; and the sandbox's own periodic checks (DigiCert polls by itself too).

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::orders::find_order;
use super::{error, json_body, lock, not_found, parse_id, stamp};
use crate::sandbox::FaultKind;
use crate::sandbox::dcv::{Job, Verdict};
use crate::sandbox::state::{State, SubStatus, base_domain, now_s};
use crate::sandbox::{Shared, save};

/// The DCV methods CertCentral knows (the token ones can be checked through the API).
const METHODS: &[&str] = &[
    "email",
    "dns-txt-token",
    "dns-cname-token",
    "http-token",
    "phone",
];

/// `PUT /order/certificate/{id}/dcv-random-value`: `{"dcv_random_value","expiration_date"}`.
pub(in crate::sandbox) async fn random_value(
    AxState(state): AxState<Shared>,
    Path(key): Path<String>,
) -> Response {
    let mut s = lock(&state);
    let Some(oid) = find_order(&s, &key).map(|o| o.id) else {
        return not_found("order");
    };
    match s.random_value(oid) {
        Some(v) => {
            axum::Json(json!({ "dcv_random_value": v.value, "expiration_date": stamp(v.expires) }))
                .into_response()
        }
        None => not_found("order"),
    }
}

/// `PUT /order/certificate/{id}/dcv-method` with `{"dcv_method": …}` (a pending order only);
/// token methods answer with the random value.
pub(in crate::sandbox) async fn method(
    AxState(state): AxState<Shared>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut s = lock(&state);
    s.tick();
    let Some(order) = find_order(&s, &key) else {
        return not_found("order");
    };
    let oid = order.id;
    let wanted = body["dcv_method"].as_str().unwrap_or_default().to_owned();
    if !METHODS.contains(&wanted.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value:dcv_method",
            "dcv_method must be one of email, dns-txt-token, dns-cname-token, http-token.",
        );
    }
    if !pending_dcv(&s, oid) {
        // Invented: the docs say the call is "only for a pending order" without a code.
        return error(
            StatusCode::BAD_REQUEST,
            "order_not_pending",
            "The DCV method can only be changed while the order waits for validation.",
        );
    }
    if wanted == "http-token" && order.dns_names.iter().any(|n| n.starts_with("*.")) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_wildcard_dcv_method",
            "http-token cannot validate wildcard names.",
        );
    }
    if let Some(o) = s.data.orders.get_mut(&oid) {
        o.dcv_method = wanted.clone();
    }
    s.dirty = true;
    if wanted.ends_with("-token") {
        match s.random_value(oid) {
            Some(v) => axum::Json(
                json!({ "dcv_random_value": v.value, "expiration_date": stamp(v.expires) }),
            )
            .into_response(),
            None => not_found("order"),
        }
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// Whether the order waits for validation (a request awaiting DCV, or a DV order).
fn pending_dcv(s: &State, order_id: u64) -> bool {
    s.data.subs.iter().any(|x| {
        x.order_id == order_id
            && x.awaiting_dcv
            && !matches!(x.status, SubStatus::Issued | SubStatus::Rejected)
    }) || s
        .data
        .orders
        .get(&order_id)
        .is_some_and(|o| o.status == "pending")
}

/// What to check for the order now: the names of its requests awaiting DCV (or its own).
fn job(s: &mut State, order_id: u64) -> Option<Job> {
    let order = s.data.orders.get(&order_id)?;
    let mut names: Vec<String> = Vec::new();
    for x in s.data.subs.iter().filter(|x| {
        x.order_id == order_id
            && x.awaiting_dcv
            && !matches!(x.status, SubStatus::Issued | SubStatus::Rejected)
    }) {
        for n in &x.new.dns_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    if names.is_empty() {
        names = order.dns_names.clone();
    }
    let method = order.dcv_method.clone();
    let value = s.random_value(order_id)?.value;
    Some(Job {
        order_id,
        method,
        value,
        names,
    })
}

/// `PUT /order/certificate/{id}/check-dcv`: checks now. Success: `{"order_status",
/// "certificate_id", "dcv_status": "valid", "dns_name_validations": [{"dns_name","status"}]}`;
/// not found: `400` `invalid_dns_txt` or `file_random_value_not_found` (dcv.md).
pub(in crate::sandbox) async fn check(
    AxState(state): AxState<Shared>,
    Path(key): Path<String>,
) -> Response {
    let (job, reach) = {
        let mut s = lock(&state);
        s.tick();
        let Some(oid) = find_order(&s, &key).map(|o| o.id) else {
            return not_found("order");
        };
        let Some(job) = job(&mut s, oid) else {
            return not_found("order");
        };
        if s.take_fault(|k| *k == FaultKind::DcvNotYet).is_some() {
            let code = match job.method.as_str() {
                "http-token" => "file_random_value_not_found",
                "dns-cname-token" => "invalid_dns_cname",
                _ => "invalid_dns_txt",
            };
            let message = "The random value was not found (the check is still in progress).";
            return error(StatusCode::BAD_REQUEST, code, message);
        }
        (job, s.cfg.reach.clone())
    };
    let verdict = reach.check(&job).await;
    let mut s = lock(&state);
    match verdict {
        Verdict::Valid(domains) => {
            s.validated(job.order_id, &domains);
            let Some(order) = s.data.orders.get(&job.order_id) else {
                return not_found("order");
            };
            let issued = s
                .data
                .subs
                .iter()
                .filter(|x| x.order_id == job.order_id && x.status == SubStatus::Issued)
                .max_by_key(|x| x.created)
                .map(|x| x.cert_id);
            let names: Vec<serde_json::Value> = job
                .names
                .iter()
                .map(|n| json!({ "dns_name": n, "status": "approved" }))
                .collect();
            let mut body = json!({
                "order_status": s.order_status(order),
                "dcv_status": "valid",
                "dns_name_validations": names,
            });
            if let Some(id) = issued {
                body["certificate_id"] = json!(id);
            }
            drop(s);
            save(&state);
            axum::Json(body).into_response()
        }
        Verdict::Invalid { code, message } => error(StatusCode::BAD_REQUEST, &code, &message),
    }
}

/// Checks every order that waits for validation (the sandbox's own polling).
pub(in crate::sandbox) async fn poll_validations(state: &Shared) {
    let (jobs, reach) = {
        let mut s = lock(state);
        s.tick();
        let waiting: Vec<u64> = s
            .data
            .subs
            .iter()
            .filter(|x| {
                x.awaiting_dcv && !matches!(x.status, SubStatus::Issued | SubStatus::Rejected)
            })
            .map(|x| x.order_id)
            .collect();
        let mut jobs = Vec::new();
        for oid in waiting {
            if !jobs.iter().any(|j: &Job| j.order_id == oid)
                && let Some(j) = job(&mut s, oid)
            {
                jobs.push(j);
            }
        }
        (jobs, s.cfg.reach.clone())
    };
    for j in jobs {
        if let Verdict::Valid(domains) = reach.check(&j).await {
            lock(state).validated(j.order_id, &domains);
        }
    }
    save(state);
}

/// `GET /domain/{id}?include_dcv=true&include_validation=true` (dcv.md):
/// `validations[].validated_until`.
pub(in crate::sandbox) async fn domain_info(
    AxState(state): AxState<Shared>,
    Path(domain_id): Path<String>,
) -> Response {
    let s = lock(&state);
    let Some(id) = parse_id(&domain_id) else {
        return not_found("domain");
    };
    let found = s
        .data
        .orders
        .values()
        .find_map(|o| o.domains.iter().find(|d| d.id == id).map(|d| (o, d)));
    let Some((order, d)) = found else {
        return not_found("domain");
    };
    let now = now_s();
    let validations = if !order.dv && d.validated_until > now {
        json!([{ "type": "ov", "name": "OV", "description": "Normal Organization Validation", "status": "active", "validated_until": stamp(d.validated_until) }])
    } else {
        json!([])
    };
    axum::Json(json!({
        "id": d.id,
        "name": d.name,
        "is_active": true,
        "dcv_method": order.dcv_method,
        "validations": validations,
        "base_domain": base_domain(&d.name),
    }))
    .into_response()
}
