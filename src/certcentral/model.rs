//! Request and response bodies, named as in certcentral-api.md. Deserialization is lenient
//! (§8): every field defaults, unknown fields are ignored, ids may be numbers or strings, and
//! objects may arrive as `[]`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `GET /order/certificate/{order_id}` (§3.1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OrderInfo {
    #[serde(deserialize_with = "lenient_u64")]
    pub id: u64,
    pub status: String,
    #[serde(deserialize_with = "object_or_empty_array")]
    pub certificate: OrderCertificate,
    /// `yyyy-MM-dd`: the end of the paid plan.
    pub order_valid_till: Option<String>,
    #[serde(deserialize_with = "lenient_opt_u64")]
    pub auto_reissue: Option<u64>,
    pub allow_duplicates: Option<bool>,
    #[serde(deserialize_with = "object_or_empty_array")]
    pub product: Product,
    pub is_multi_year_plan: Option<Value>,
}

/// The order's current primary certificate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OrderCertificate {
    #[serde(deserialize_with = "lenient_opt_u64")]
    pub id: Option<u64>,
    pub serial_number: Option<String>,
    pub common_name: Option<String>,
    #[serde(deserialize_with = "names")]
    pub dns_names: Vec<String>,
    pub signature_hash: Option<String>,
    #[serde(deserialize_with = "object_or_empty_array")]
    pub server_platform: ServerPlatform,
    pub valid_till: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerPlatform {
    #[serde(deserialize_with = "lenient_opt_i64")]
    pub id: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Product {
    pub name_id: Option<String>,
}

/// Body of `POST …/reissue` and `POST …/duplicate` (§2.1, §2.2).
#[derive(Debug, Clone, Serialize)]
pub struct SubmitRequest {
    pub certificate: SubmitCertificate,
    pub skip_approval: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubmitCertificate {
    pub common_name: String,
    pub dns_names: Vec<String>,
    /// PEM with its armour, newlines stripped (§2.1).
    pub csr: String,
    pub server_platform: PlatformRef,
    pub signature_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_validity: Option<CertValidity>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformRef {
    pub id: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertValidity {
    pub days: u32,
}

/// The `201` answer to a reissue or duplicate: everything but `id` is optional (§2.1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SubmitResponse {
    #[serde(deserialize_with = "lenient_u64")]
    pub id: u64,
    pub requests: Vec<RequestRef>,
    #[serde(deserialize_with = "lenient_opt_u64")]
    pub certificate_id: Option<u64>,
    pub certificate_chain: Vec<ChainEntry>,
    pub dcv_random_value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RequestRef {
    #[serde(deserialize_with = "lenient_u64")]
    pub id: u64,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChainEntry {
    pub subject_common_name: Option<String>,
    pub pem: String,
}

/// `GET …/reissue` and `GET …/duplicate` (§3.2, §3.3).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CertificateList {
    pub certificates: Vec<ListedCertificate>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListedCertificate {
    #[serde(deserialize_with = "lenient_u64")]
    pub id: u64,
    pub serial_number: Option<String>,
    pub status: String,
    pub csr: Option<String>,
    pub common_name: Option<String>,
    #[serde(deserialize_with = "names")]
    pub dns_names: Vec<String>,
    pub date_created: Option<String>,
    pub sub_id: Option<Value>,
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(lenient_opt_u64(d)?.unwrap_or_default())
}

/// Accepts `123`, `"123"`, `null` or absence.
fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => Ok(n.as_u64()),
        Value::String(s) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
        Value::Bool(b) => Ok(Some(u64::from(b))),
        _ => Ok(None),
    }
}

fn lenient_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => Ok(n.as_i64()),
        Value::String(s) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
        _ => Ok(None),
    }
}

/// CertCentral sometimes sends an empty object as `[]` (§8).
fn object_or_empty_array<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + serde::de::DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::Array(a) if a.is_empty() => Ok(T::default()),
        Value::Null => Ok(T::default()),
        v => serde_json::from_value(v).map_err(serde::de::Error::custom),
    }
}

/// DNS names with blank entries dropped (§8: a missing list may arrive as `[" "]`).
fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v: Option<Vec<String>> = Option::deserialize(d)?;
    Ok(v.unwrap_or_default()
        .into_iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirks() {
        let o: OrderInfo = serde_json::from_str(
            r#"{"id":"42","status":"issued","product":[],"certificate":{"id":7,"dns_names":[" "],"server_platform":[]},"is_multi_year_plan":"1","auto_reissue":1}"#,
        )
        .expect("lenient order");
        assert_eq!(
            (o.id, o.certificate.id, o.auto_reissue),
            (42, Some(7), Some(1))
        );
        assert!(o.certificate.dns_names.is_empty());
        let r: SubmitResponse = serde_json::from_str(r#"{"id":1,"requests":[{"id":"4321"}]}"#)
            .expect("string request id");
        assert_eq!(r.requests[0].id, 4321);
    }
}
