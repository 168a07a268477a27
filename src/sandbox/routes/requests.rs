//! Request info and request status (certcentral-api.md §3.4).

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::orders::request_status;
use super::{error, json_body, lock, not_found, organization, parse_id, stamp};
use crate::sandbox::Shared;
use crate::sandbox::state::{SubStatus, now_ms};

/// `GET /request/{id}`: `id`, `date`, `type`, `status`, `date_processed`, `requester`,
/// `order`, `comments`, `processor_comment`.
pub(in crate::sandbox) async fn info(
    AxState(state): AxState<Shared>,
    Path(request_id): Path<String>,
) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(x) =
        parse_id(&request_id).and_then(|id| s.data.subs.iter().find(|x| x.request_id == id))
    else {
        return not_found("request");
    };
    let order = s.data.orders.get(&x.order_id);
    let mut body = json!({
        "id": x.request_id,
        "date": stamp(x.created),
        "type": x.kind.as_str(),
        "status": request_status(x.status),
        "requester": { "id": 1, "first_name": "certkeeper", "last_name": "sandbox", "email": "sandbox@localhost" },
        "order": {
            "id": x.order_id,
            "certificate": {
                "common_name": x.new.common_name,
                "dns_names": x.new.dns_names,
                "signature_hash": x.new.signature_hash,
                "server_platform": { "id": x.new.server_platform },
            },
            "status": order.map(|o| s.order_status(o)).unwrap_or_default(),
            "organization": organization(),
            "product": order.map(|o| json!({ "name_id": o.product })).unwrap_or_default(),
        },
        "comments": "",
    });
    if x.status != SubStatus::Pending {
        body["date_processed"] = json!(stamp(x.approve_at / 1000));
        body["processor"] = json!({ "id": 1, "first_name": "certkeeper", "last_name": "sandbox", "email": "sandbox@localhost" });
    }
    if let Some(c) = &x.processor_comment {
        body["processor_comment"] = json!(c);
    }
    axum::Json(body).into_response()
}

/// `PUT /request/{id}/status` with `{"status":"approved"|"rejected","processor_comment":…}`:
/// `204`.
pub(in crate::sandbox) async fn update_status(
    AxState(state): AxState<Shared>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut s = lock(&state);
    s.tick();
    let Some(i) =
        parse_id(&request_id).and_then(|id| s.data.subs.iter().position(|x| x.request_id == id))
    else {
        return not_found("request");
    };
    let wanted = body["status"].as_str().unwrap_or_default();
    if !matches!(wanted, "approved" | "rejected") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value:status",
            "status must be \"approved\" or \"rejected\".",
        );
    }
    let x = &mut s.data.subs[i];
    if x.status != SubStatus::Pending {
        // Invented: no documented code for a request already processed.
        return error(
            StatusCode::BAD_REQUEST,
            "request_already_processed",
            "The request was already processed.",
        );
    }
    x.processor_comment = body["processor_comment"].as_str().map(str::to_owned);
    if wanted == "approved" {
        x.approve_at = now_ms();
    } else {
        x.status = SubStatus::Rejected;
    }
    s.dirty = true;
    s.tick();
    StatusCode::NO_CONTENT.into_response()
}
