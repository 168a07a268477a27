//! Request and response bodies, named as in certcentral-api.md. Deserialization is strict
//! where DigiCert documents a field as always there (an order's `id`, `status` and
//! `certificate`; a request's `id` and `status`; the `id` of a submitted request and of listed
//! certificates): its absence is an error naming the field and the call. Everything else is
//! lenient (§8): optional fields default, unknown fields are ignored, ids may be numbers or
//! strings, and objects may arrive as `[]`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `GET /order/certificate/{order_id}` (§3.1).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OrderInfo {
    #[serde(deserialize_with = "required_u64")]
    pub id: u64,
    pub status: String,
    #[serde(deserialize_with = "object_or_empty_array")]
    pub certificate: OrderCertificate,
    /// `yyyy-MM-dd`: the end of the paid plan.
    #[serde(default)]
    pub order_valid_till: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub auto_reissue: Option<u64>,
    #[serde(default)]
    pub allow_duplicates: Option<bool>,
    #[serde(default, deserialize_with = "object_or_empty_array")]
    pub product: Product,
    #[serde(default)]
    pub is_multi_year_plan: Option<Value>,
    /// Whether a request waits on the order (the metadata-sync model, §3.1).
    #[serde(default)]
    pub has_pending_request: Option<bool>,
    /// The order's DCV method and random value, where order info carries them (dcv.md).
    #[serde(default)]
    pub dcv_method: Option<String>,
    #[serde(default)]
    pub dcv_random_value: Option<String>,
    /// The order's domains, where order info lists them (shape not documented: lenient).
    #[serde(default, deserialize_with = "lenient_list")]
    pub domains: Vec<OrderDomain>,
}

impl OrderInfo {
    /// Whether the order is a Multi-year Plan (`is_multi_year_plan` is the string `"1"`, §8).
    pub fn is_multi_year_plan(&self) -> bool {
        match &self.is_multi_year_plan {
            Some(Value::String(s)) => s.trim() == "1",
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            Some(Value::Bool(b)) => *b,
            _ => false,
        }
    }
}

/// A domain of an order, as order info may list it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OrderDomain {
    #[serde(deserialize_with = "lenient_opt_u64")]
    pub id: Option<u64>,
    pub name: String,
    pub dcv_status: Option<String>,
}

/// `PUT …/dcv-random-value` and `PUT …/dcv-method` (dcv.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DcvRandomValue {
    pub dcv_random_value: String,
    /// ISO-8601, e.g. `2026-12-31T16:25:52+00:00`.
    pub expiration_date: Option<String>,
}

/// `PUT …/check-dcv` (dcv.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CheckDcv {
    pub order_status: Option<String>,
    #[serde(deserialize_with = "lenient_opt_u64")]
    pub certificate_id: Option<u64>,
    pub dcv_status: Option<String>,
    pub dns_name_validations: Vec<NameValidation>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NameValidation {
    pub dns_name: String,
    pub status: String,
}

/// `GET /domain/{id}?include_dcv=true&include_validation=true` (dcv.md).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DomainInfo {
    #[serde(deserialize_with = "required_u64")]
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub dcv_method: Option<String>,
    #[serde(default)]
    pub validations: Vec<DomainValidation>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DomainValidation {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    /// `yyyy-MM-dd` (or ISO-8601).
    pub validated_until: Option<String>,
}

/// `GET /request/{request_id}` (§3.4).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestInfo {
    #[serde(deserialize_with = "required_u64")]
    pub id: u64,
    pub status: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub processor_comment: Option<String>,
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
pub struct SubmitResponse {
    #[serde(deserialize_with = "required_u64")]
    pub id: u64,
    #[serde(default)]
    pub requests: Vec<RequestRef>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub certificate_id: Option<u64>,
    #[serde(default)]
    pub certificate_chain: Vec<ChainEntry>,
    #[serde(default)]
    pub dcv_random_value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestRef {
    #[serde(deserialize_with = "required_u64")]
    pub id: u64,
    #[serde(default)]
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
pub struct ListedCertificate {
    #[serde(deserialize_with = "required_u64")]
    pub id: u64,
    #[serde(default)]
    pub serial_number: Option<String>,
    pub status: String,
    #[serde(default)]
    pub csr: Option<String>,
    #[serde(default)]
    pub common_name: Option<String>,
    #[serde(default, deserialize_with = "names")]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub date_created: Option<String>,
    #[serde(default)]
    pub sub_id: Option<Value>,
}

/// A required id: `123` or `"123"`; anything else is an error.
fn required_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    lenient_opt_u64(d)?.ok_or_else(|| serde::de::Error::custom("expected a numeric id"))
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

/// A list that may arrive as anything else (absent, `null`, an object): empty then.
fn lenient_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::Array(a) => Ok(a
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()),
        _ => Ok(Vec::new()),
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
