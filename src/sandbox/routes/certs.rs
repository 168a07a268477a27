//! Downloads (certcentral-api.md §4), the chain, revoke.
//!
//! Formats: `pem_all` (leaf, intermediate, root), `pem_noroot`, `pem_nointermediate`, `p7b` and
//! `cer` (a PEM-armoured PKCS#7 bundle), `default`, `default_pem`, `default_cer` (a ZIP of
//! separate files: leaf, intermediate, root) and `apache` (a ZIP of leaf and intermediate).
//! Every PEM has CRLF line endings.

use std::io::Write;

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::orders::find_order;
use super::submit::served_leaf;
use super::{crlf, error, json_body, lock, not_found, parse_id, stamp};
use crate::sandbox::Shared;
use crate::sandbox::state::{Cert, State, now_s};

pub(in crate::sandbox) async fn download(
    AxState(state): AxState<Shared>,
    Path((cert_id, format)): Path<(String, String)>,
) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(c) = parse_id(&cert_id).and_then(|id| s.data.certs.get(&id)) else {
        return not_found("certificate");
    };
    render(&s, c, &format)
}

/// `GET /certificate/download/order/{order_id}/format/{format}`: the order's *primary*
/// certificate only (§4).
pub(in crate::sandbox) async fn download_by_order(
    AxState(state): AxState<Shared>,
    Path((order_key, format)): Path<(String, String)>,
) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(order) = find_order(&s, &order_key) else {
        return not_found("order");
    };
    let Some(c) = s.data.certs.get(&order.current_cert) else {
        return not_found("certificate");
    };
    render(&s, c, &format)
}

/// `GET /certificate/{id}/download/platform`: the format of the certificate's platform.
pub(in crate::sandbox) async fn download_platform_default(
    AxState(state): AxState<Shared>,
    Path(cert_id): Path<String>,
) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(c) = parse_id(&cert_id).and_then(|id| s.data.certs.get(&id)) else {
        return not_found("certificate");
    };
    render(&s, c, platform_format(c.server_platform))
}

/// `GET /certificate/{id}/download/platform/{platform_id}`.
pub(in crate::sandbox) async fn download_platform(
    AxState(state): AxState<Shared>,
    Path((cert_id, platform)): Path<(String, String)>,
) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(c) = parse_id(&cert_id).and_then(|id| s.data.certs.get(&id)) else {
        return not_found("certificate");
    };
    let platform = platform.parse::<i64>().unwrap_or(-1);
    render(&s, c, platform_format(platform))
}

/// The format a platform downloads as. Format id 29 is `pem_all` (Lemur cites DigiCert's
/// glossary for it); Apache gets its ZIP; the rest is invented: nginx PEM without root,
/// anything else the `default` ZIP.
fn platform_format(platform: i64) -> &'static str {
    match platform {
        29 => "pem_all",
        2 => "apache",
        45 => "pem_noroot",
        _ => "default",
    }
}

fn render(s: &State, c: &Cert, format: &str) -> Response {
    let leaf = served_leaf(c);
    let (ica, root) = (crlf(&s.ca.intermediate_pem), crlf(&s.ca.root_pem));
    let pem =
        |body: String| ([(header::CONTENT_TYPE, "application/x-pem-file")], body).into_response();
    match format {
        "pem_all" => pem(format!("{leaf}{ica}{root}")),
        "pem_noroot" => pem(format!("{leaf}{ica}")),
        "pem_nointermediate" => pem(leaf),
        "p7b" | "cer" => match pkcs7(&[&root, &ica, &leaf]) {
            Ok(p7) => (
                [(header::CONTENT_TYPE, "application/x-pkcs7-certificates")],
                p7,
            )
                .into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e),
        },
        "default" | "default_pem" | "default_cer" | "apache" => {
            let ext = if format == "default_cer" {
                "cer"
            } else {
                "crt"
            };
            let stem = c.common_name.replace("*.", "star_").replace('.', "_");
            let mut files = vec![
                (format!("{stem}.{ext}"), leaf),
                (format!("DigiCertCA.{ext}"), ica),
            ];
            if format != "apache" {
                files.push((format!("TrustedRoot.{ext}"), root));
            }
            match zip(&files) {
                Ok(bytes) => ([(header::CONTENT_TYPE, "application/zip")], bytes).into_response(),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e),
            }
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "invalid_value:format",
            "The format must be one of pem_all, pem_noroot, pem_nointermediate, p7b, cer, default, default_pem, default_cer, apache.",
        ),
    }
}

/// A certs-only PKCS#7 SignedData (RFC 2315, RFC 5652 §5), PEM-armoured as CertCentral serves
/// `p7b` (§4).
fn pkcs7(pems: &[&str]) -> Result<String, String> {
    use cms::cert::CertificateChoices;
    use cms::cert::x509::Certificate;
    use cms::content_info::{CmsVersion, ContentInfo};
    use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
    use der::asn1::SetOfVec;
    use der::{Any, Decode, Encode};
    let mut certs = Vec::new();
    for p in pems {
        for block in ::pem::parse_many(p).map_err(|e| e.to_string())? {
            let cert = Certificate::from_der(block.contents()).map_err(|e| e.to_string())?;
            certs.push(CertificateChoices::Certificate(cert));
        }
    }
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(certs).map_err(|e| e.to_string())?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    let info = ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(|e| e.to_string())?,
    };
    let der = info.to_der().map_err(|e| e.to_string())?;
    Ok(super::pem_crlf("PKCS7", &der))
}

/// A ZIP of the files (stored, not compressed).
fn zip(files: &[(String, String)]) -> Result<Vec<u8>, String> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, content) in files {
        w.start_file(name.as_str(), options)
            .map_err(|e| e.to_string())?;
        w.write_all(content.as_bytes()).map_err(|e| e.to_string())?;
    }
    w.finish()
        .map(std::io::Cursor::into_inner)
        .map_err(|e| e.to_string())
}

/// `GET /certificate/{id}/chain`: `{"intermediates":[…]}`, the first element the
/// end-entity certificate (used by four clients, certcentral-api.md §4), then the
/// intermediate; no root.
pub(in crate::sandbox) async fn chain(
    AxState(state): AxState<Shared>,
    Path(cert_id): Path<String>,
) -> Response {
    let mut s = lock(&state);
    s.tick();
    let Some(c) = parse_id(&cert_id).and_then(|id| s.data.certs.get(&id)) else {
        return not_found("certificate");
    };
    axum::Json(json!({ "intermediates": [
        { "subject_common_name": c.common_name, "pem": served_leaf(c) },
        { "subject_common_name": "certkeeper Sandbox TLS ICA", "pem": crlf(&s.ca.intermediate_pem) },
    ]}))
    .into_response()
}

/// `PUT /certificate/{id}/revoke`: `201` with the revoke request. Invented: the sandbox
/// revokes at once (CertCentral waits for an approver).
pub(in crate::sandbox) async fn revoke(
    AxState(state): AxState<Shared>,
    Path(cert_id): Path<String>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut s = lock(&state);
    let Some(id) = parse_id(&cert_id).filter(|id| s.data.certs.contains_key(id)) else {
        return not_found("certificate");
    };
    if let Some(c) = s.data.certs.get_mut(&id) {
        c.status = "revoked".into();
    }
    let request_id = s.data.next_request;
    s.data.next_request = s.data.next_request.saturating_add(1);
    s.dirty = true;
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "id": request_id,
            "date": stamp(now_s()),
            "type": "revoke",
            "status": "approved",
            "requester": { "id": 1, "first_name": "certkeeper", "last_name": "sandbox", "email": "sandbox@localhost" },
            "comments": body["comments"].as_str().unwrap_or(""),
        })),
    )
        .into_response()
}
