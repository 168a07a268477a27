//! Order info, list orders, a new order, order status, auto-reissue.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::submit::{csr_public_key, request_fields};
use super::{
    ORGANIZATION_ID, day, error, json_body, lock, not_found, organization, parse_id, platform_name,
    stamp,
};
use crate::sandbox::state::{Cert, NewSubmission, Order, State, SubStatus, SubmitKind, now_s};
use crate::sandbox::{FaultKind, Shared};

/// SHA-1 of the DER, uppercase hex: CertCentral's `thumbprint`.
pub(super) fn thumbprint(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The key size of a certificate's public key, for `key_size`.
fn key_size(der: &[u8]) -> u64 {
    use x509_parser::prelude::FromDer;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return 0;
    };
    match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
            let n = rsa.modulus;
            let start = n.iter().position(|b| *b != 0).unwrap_or(n.len());
            ((n.len() - start) * 8) as u64
        }
        Ok(x509_parser::public_key::PublicKey::EC(p)) => p.key_size() as u64,
        _ => 0,
    }
}

/// An order, for a path segment that is an order id, or the serial number or thumbprint of an
/// order's *primary* certificate (certcentral-api.md §3.1: not a duplicate's).
pub(super) fn find_order<'a>(s: &'a State, key: &str) -> Option<&'a Order> {
    if let Some(o) = parse_id(key).and_then(|id| s.data.orders.get(&id)) {
        return Some(o);
    }
    let key = key.to_ascii_uppercase();
    s.data.orders.values().find(|o| {
        s.data
            .certs
            .get(&o.current_cert)
            .is_some_and(|c| c.serial == key || thumbprint(&c.der) == key)
    })
}

/// The `certificate` object of order info.
fn certificate_json(s: &State, order: &Order, cert: &Cert) -> Value {
    let now = now_s();
    let dns_names: Vec<&String> = cert
        .dns_names
        .iter()
        .chain(
            order
                .companion
                .iter()
                .filter(|c| !cert.dns_names.contains(c)),
        )
        .collect();
    let _ = s;
    json!({
        "id": cert.id,
        "thumbprint": thumbprint(&cert.der),
        "serial_number": cert.serial,
        "common_name": cert.common_name,
        "dns_names": dns_names,
        "date_created": stamp(cert.created),
        "valid_from": day(cert.not_before),
        "valid_till": day(cert.not_after),
        "days_remaining": ((cert.not_after - now) / 86_400).max(0),
        "csr": cert.csr,
        "organization_units": [],
        "server_platform": { "id": cert.server_platform, "name": platform_name(cert.server_platform), "install_url": "", "csr_url": "" },
        "signature_hash": cert.signature_hash,
        "key_size": key_size(&cert.der),
        "ca_cert": { "id": "SANDBOXICA", "name": "certkeeper Sandbox TLS ICA" },
    })
}

fn product_json(order: &Order) -> Value {
    let dv = order.dv;
    json!({
        "name_id": order.product,
        "name": if dv { "GeoTrust Standard DV" } else { "Standard SSL" },
        "type": "ssl_certificate",
        "validation_type": if dv { "dv" } else { "ov" },
        "validation_name": if dv { "DV" } else { "OV" },
        "validation_description": if dv { "Domain Validation" } else { "Normal Organization Validation" },
    })
}

/// Order info (certcentral-api.md §3.1).
fn order_json(s: &State, order: &Order) -> Value {
    let cert = s.data.certs.get(&order.current_cert);
    let requests: Vec<Value> = s
        .data
        .subs
        .iter()
        .filter(|x| x.order_id == order.id)
        .map(|x| json!({ "id": x.request_id, "date": stamp(x.created), "type": x.kind.as_str(), "status": request_status(x.status), "comments": "" }))
        .collect();
    let mut body = json!({
        "id": order.id,
        "certificate": cert.map_or(Value::Null, |c| certificate_json(s, order, c)),
        "status": s.order_status(order),
        "is_renewed": false,
        "date_created": stamp(order.created),
        "organization": if s.has_fault(&FaultKind::OrganizationEmptyArray) { json!([]) } else { organization() },
        "order_valid_from": day(order.created),
        "order_valid_till": order.valid_till,
        "disable_renewal_notifications": false,
        "container": { "id": 1, "name": "certkeeper sandbox" },
        "product": product_json(order),
        "requests": requests,
        "auto_renew": 0,
        "auto_reissue": u8::from(order.auto_reissue),
        "allow_duplicates": order.allow_duplicates,
        "duplicates_count": s.data.subs.iter().filter(|x| x.order_id == order.id && x.kind == SubmitKind::Duplicate).count(),
        "reissues_count": s.data.subs.iter().filter(|x| x.order_id == order.id && x.kind == SubmitKind::Reissue).count(),
        "has_pending_request": s.has_pending_request(order.id),
        "payment_method": "balance",
        "disable_ct": false,
        "dcv_method": order.dcv_method,
    });
    if s.has_fault(&FaultKind::OrderWithoutStatus)
        && let Some(o) = body.as_object_mut()
    {
        o.remove("status");
    }
    if order.multi_year_plan {
        // A string "1", omitted when false (§8).
        body["is_multi_year_plan"] = json!("1");
    }
    // Invented: DigiCert's docs do not show where order info lists its domains (dcv.md); the
    // sandbox lists them with their ids for domain info.
    let now = now_s();
    body["domains"] = json!(order
        .domains
        .iter()
        .map(|d| json!({ "id": d.id, "name": d.name, "dcv_status": if !order.dv && d.validated_until > now { "valid" } else { "pending" } }))
        .collect::<Vec<_>>());
    body
}

pub(super) fn request_status(s: SubStatus) -> &'static str {
    match s {
        SubStatus::Pending => "pending",
        SubStatus::Approved | SubStatus::Issued => "approved",
        SubStatus::Rejected => "rejected",
    }
}

pub(in crate::sandbox) async fn info(
    AxState(state): AxState<Shared>,
    Path(key): Path<String>,
) -> Response {
    let mut s = lock(&state);
    s.tick();
    match find_order(&s, &key) {
        Some(order) => axum::Json(order_json(&s, order)).into_response(),
        None => not_found("order"),
    }
}

/// `GET /order/certificate` with `filters[status]`, `filters[common_name]`,
/// `filters[serial_number]`, `filters[organization_id]`, `filters[product_name_id]`,
/// `filters[search]`, `limit`, `offset`.
pub(in crate::sandbox) async fn list(
    AxState(state): AxState<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = lock(&state);
    s.tick();
    let filter = |k: &str| {
        q.get(&format!("filters[{k}]"))
            .map(|v| v.to_ascii_lowercase())
    };
    let (status, cn, serial, org, product, search) = (
        filter("status"),
        filter("common_name"),
        filter("serial_number"),
        filter("organization_id"),
        filter("product_name_id"),
        filter("search"),
    );
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let offset = q
        .get("offset")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let matching: Vec<&Order> = s
        .data
        .orders
        .values()
        .filter(|o| {
            let cert = s.data.certs.get(&o.current_cert);
            status.as_ref().is_none_or(|st| s.order_status(o) == *st)
                && cn
                    .as_ref()
                    .is_none_or(|c| o.common_name.contains(c.as_str()))
                && serial
                    .as_ref()
                    .is_none_or(|sn| cert.is_some_and(|c| c.serial.eq_ignore_ascii_case(sn)))
                && org
                    .as_ref()
                    .is_none_or(|id| *id == ORGANIZATION_ID.to_string())
                && product.as_ref().is_none_or(|p| o.product == *p)
                && search
                    .as_ref()
                    .is_none_or(|t| o.common_name.contains(t.as_str()) || o.id.to_string() == *t)
        })
        .collect();
    let total = matching.len();
    let orders: Vec<Value> = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|o| {
            let c = s.data.certs.get(&o.current_cert);
            json!({
                "id": o.id,
                "certificate": c.map_or(Value::Null, |c| json!({
                    "id": c.id,
                    "common_name": c.common_name,
                    "dns_names": c.dns_names,
                    "valid_till": day(c.not_after),
                    "days_remaining": ((c.not_after - now_s()) / 86_400).max(0),
                    "signature_hash": c.signature_hash,
                    "serial_number": c.serial,
                })),
                "status": s.order_status(o),
                "is_renewed": false,
                "date_created": stamp(o.created),
                "organization": organization(),
                "container": { "id": 1, "name": "certkeeper sandbox" },
                "product": product_json(o),
                "has_duplicates": s.data.subs.iter().any(|x| x.order_id == o.id && x.kind == SubmitKind::Duplicate),
                "product_name_id": o.product,
            })
        })
        .collect();
    axum::Json(
        json!({ "orders": orders, "page": { "total": total, "limit": limit, "offset": offset } }),
    )
    .into_response()
}

/// `POST /order/certificate/{product_name_id}`: a new order with its first certificate. The
/// request's fields are those of DigiCert's order examples (common_name, dns_names, csr,
/// signature_hash, server_platform, organization, validity). Answer: `{"id", "requests":
/// [{"id", "status"}]}`, plus `certificate_id` with `skip_approval` (as for reissues).
pub(in crate::sandbox) async fn create(
    AxState(state): AxState<Shared>,
    Path(product): Path<String>,
    body: Bytes,
) -> Response {
    if parse_id(&product).is_some() {
        return error(StatusCode::NOT_FOUND, "not_found|route", "Route not found.");
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
    let years = body["validity_years"]
        .as_u64()
        .or_else(|| body["order_validity"]["years"].as_u64())
        .unwrap_or(1)
        .clamp(1, 3);
    let days = body["order_validity"]["days"]
        .as_u64()
        .map_or(years * 365, |d| d.clamp(1, 3 * 365));
    let mut s = lock(&state);
    let id = (1_000_001u64..)
        .find(|i| !s.data.orders.contains_key(i))
        .unwrap_or(u64::MAX);
    let mut names = vec![fields.common_name.clone()];
    for n in &fields.dns_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let spec = crate::sandbox::OrderSpec {
        id,
        common_name: fields.common_name.clone(),
        dns_names: names.clone(),
        status: "issued".into(),
        order_valid_till: Some(
            (time::OffsetDateTime::now_utc().date()
                + std::time::Duration::from_secs(days * 86_400))
            .to_string(),
        ),
        allow_duplicates: true,
        auto_reissue: false,
        auto_companion: false,
        multi_year_plan: years > 1,
        dv: product.contains("dv"),
        validated_until: None,
        dcv_method: body["dcv_method"].as_str().map(str::to_owned),
        product: Some(product),
    };
    if let Err(e) = s.add_order(&spec) {
        return error(StatusCode::BAD_REQUEST, "invalid_value", &e.to_string());
    }
    let skip = body["skip_approval"].as_bool().unwrap_or(false);
    let i = s.submit(
        id,
        SubmitKind::New,
        NewSubmission {
            validity_days: None,
            csr_pem: fields.csr,
            spki,
            common_name: fields.common_name,
            dns_names: names,
            skip_approval: skip,
            server_platform: fields.server_platform,
            signature_hash: fields.signature_hash,
        },
    );
    let sub = &s.data.subs[i];
    let mut answer = json!({ "id": id, "requests": [{ "id": sub.request_id, "status": request_status(sub.status) }] });
    if skip {
        answer["certificate_id"] = json!(sub.cert_id);
    }
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// `PUT /order/certificate/{id}/status` with `{"status":"canceled","note":…}`: cancels the
/// pending request; `204` (certcentral-api.md §2.1). The value is lowercase, as documented.
pub(in crate::sandbox) async fn update_status(
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
    let Some(oid) = find_order(&s, &key).map(|o| o.id) else {
        return not_found("order");
    };
    if body["status"].as_str() != Some("canceled") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value:status",
            "status must be \"canceled\".",
        );
    }
    let note = body["note"].as_str().map(str::to_owned);
    let mut canceled = false;
    for x in s.data.subs.iter_mut().filter(|x| {
        x.order_id == oid && matches!(x.status, SubStatus::Pending | SubStatus::Approved)
    }) {
        x.status = SubStatus::Rejected;
        x.processor_comment = note.clone();
        canceled = true;
    }
    if !canceled {
        // Invented: no documented code for canceling an order without a pending request.
        return error(
            StatusCode::BAD_REQUEST,
            "no_pending_request",
            "The order has no pending request to cancel.",
        );
    }
    s.dirty = true;
    StatusCode::NO_CONTENT.into_response()
}

/// `PUT /order/certificate/{id}/auto-reissue` with `{"auto_reissue": 0|1}`: `204`.
pub(in crate::sandbox) async fn auto_reissue(
    AxState(state): AxState<Shared>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut s = lock(&state);
    let Some(oid) = find_order(&s, &key).map(|o| o.id) else {
        return not_found("order");
    };
    let Some(value) = body["auto_reissue"].as_u64().filter(|v| *v <= 1) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value:auto_reissue",
            "auto_reissue must be 0 or 1.",
        );
    };
    if let Some(o) = s.data.orders.get_mut(&oid) {
        o.auto_reissue = value == 1;
    }
    s.dirty = true;
    StatusCode::NO_CONTENT.into_response()
}
