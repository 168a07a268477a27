//! The shared vocabulary: names, ids and enums that every layer speaks.
//!
//! This module imports nothing from the crate. Types here are valid by construction: a
//! [`CertName`] is always a safe file-name component, an [`ApiKey`] never prints itself.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A certificate's configured name: letters, digits, `-` and `_`; used as a file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CertName(String);

impl CertName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CertName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err(format!("name {s:?} must be 1 to 64 characters long"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "name {s:?} contains {c:?}; use only letters, digits, '-' and '_'"
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for CertName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CertCentral order id.
pub type OrderId = u64;

/// How a certificate is renewed on its order (certcentral-api.md §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Replace the order's certificate (`POST …/reissue`).
    #[default]
    Reissue,
    /// An extra certificate on the order with its own key (`POST …/duplicate`).
    Duplicate,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reissue => "reissue",
            Self::Duplicate => "duplicate",
        })
    }
}

/// The private key algorithms public CAs accept (certcentral-api.md §7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
}

impl KeyType {
    pub const ALL: [Self; 5] = [
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::EcdsaP256,
        Self::EcdsaP384,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hash CertCentral signs the certificate with (`signature_hash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureHash {
    Sha256,
    Sha384,
    Sha512,
}

impl SignatureHash {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for SignatureHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How CertCentral checks that the order's names are under our control (dcv.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DcvMethod {
    /// Validation happens elsewhere (a person, prevalidated domains).
    #[default]
    #[serde(rename = "none")]
    None,
    /// `http://NAME/.well-known/pki-validation/fileauth.txt` holds the random value.
    #[serde(rename = "http-token")]
    HttpToken,
    /// A TXT record holds the random value.
    #[serde(rename = "dns-txt-token")]
    DnsTxtToken,
    /// `_dnsauth.NAME` is a CNAME to `RANDOM.dcv.digicert.com`.
    #[serde(rename = "dns-cname-token")]
    DnsCnameToken,
}

impl DcvMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::HttpToken => "http-token",
            Self::DnsTxtToken => "dns-txt-token",
            Self::DnsCnameToken => "dns-cname-token",
        }
    }

    /// Whether the method publishes DNS records.
    pub fn is_dns(self) -> bool {
        matches!(self, Self::DnsTxtToken | Self::DnsCnameToken)
    }
}

impl fmt::Display for DcvMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ACME challenge type certkeeper completes (RFC 8555 §8.3, §8.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChallengeType {
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "dns-01")]
    Dns01,
}

impl ChallengeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::Dns01 => "dns-01",
        }
    }
}

impl fmt::Display for ChallengeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The domain a name is validated at: `*.example.com` at `example.com` (dcv.md; RFC 8555 §7.1.3).
pub fn validation_domain(name: &str) -> &str {
    name.strip_prefix("*.").unwrap_or(name)
}

/// What an installed file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// The private key (PKCS#8 PEM).
    Key,
    /// The leaf certificate only.
    Cert,
    /// Intermediates, no root.
    Chain,
    /// Leaf + intermediates.
    Fullchain,
    /// Key + leaf + intermediates (HAProxy).
    Combined,
}

impl FileRole {
    /// Whether the file contains the private key.
    pub fn is_secret(self) -> bool {
        matches!(self, Self::Key | Self::Combined)
    }

    /// The file's name inside an installed generation.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Key => "key.pem",
            Self::Cert => "cert.pem",
            Self::Chain => "chain.pem",
            Self::Fullchain => "fullchain.pem",
            Self::Combined => "combined.pem",
        }
    }
}

/// The CertCentral API key. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    secret: String,
    /// Where the key was read from (a file, the systemd credential), for the start-up log.
    source: String,
}

impl ApiKey {
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            source: "given".into(),
        }
    }

    /// The same key, saying where it came from.
    pub fn from_source(self, source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..self
        }
    }

    /// The secret itself, for the `X-DC-DEVKEY` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// Where the key was read from (never the key).
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The CertCentral API base URL: HTTPS anywhere, plain HTTP only to a loopback address
/// (the sandbox). SPEC.md "Talking to CertCentral". Stored without a trailing `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiUrl(String);

impl ApiUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ApiUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(s).map_err(|e| format!("invalid url {s:?}: {e}"))?;
        let loopback = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(format!(
                    "url {s:?} uses plain http://, which is allowed only for loopback addresses; use https://"
                ));
            }
            other => return Err(format!("url {s:?} has scheme {other:?}; use https://")),
        }
        Ok(Self(s.trim_end_matches('/').to_owned()))
    }
}

impl<'de> Deserialize<'de> for ApiUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A certificate's list of names: the common name first (when there is one), then each of
/// `others` once.
pub fn name_list(common_name: Option<String>, others: &[String]) -> Vec<String> {
    let mut names: Vec<String> = common_name.into_iter().collect();
    for n in others {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<std::time::Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Text from outside the process (a CA's message, a DNS server's answer) made fit for logs,
/// terminals, journals and hook environments: control characters escaped (`\n`, `\u{1b}`),
/// and cut after `limit` characters, marked "(truncated)".
pub fn outside_text(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit) + 16);
    for (n, c) in text.chars().enumerate() {
        if n == limit {
            out.push_str("… (truncated)");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The `www.`/base companion some CertCentral products add for free to a common name:
/// `www.example.com` for `example.com`, and back.
pub fn companion(common_name: &str) -> String {
    match common_name.strip_prefix("www.") {
        Some(base) => base.to_owned(),
        None => format!("www.{common_name}"),
    }
}

/// A stable 64-bit hash (FNV-1a): for fingerprints and per-name jitter that must not change
/// between runs or releases.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Formats unix seconds as RFC 3339 UTC, for operators.
pub fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The current time in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_escaped_and_cut() {
        assert_eq!(outside_text("ok: fine", 100), "ok: fine");
        assert_eq!(outside_text("a\nb\u{1b}[2J", 100), "a\\nb\\u{1b}[2J");
        assert_eq!(outside_text("abcdef", 3), "abc… (truncated)");
        assert_eq!(outside_text("é漢字", 2), "é漢… (truncated)");
    }

    #[test]
    fn name_list_puts_the_common_name_first_and_each_name_once() {
        let others = [
            "b.test".to_owned(),
            "a.test".to_owned(),
            "b.test".to_owned(),
        ];
        assert_eq!(
            name_list(Some("a.test".into()), &others),
            ["a.test", "b.test"]
        );
        assert_eq!(name_list(None, &others), ["b.test", "a.test"]);
    }

    #[test]
    fn cert_names() {
        assert!("www".parse::<CertName>().is_ok());
        assert!("a-b_C9".parse::<CertName>().is_ok());
        assert!("".parse::<CertName>().is_err());
        assert!("../etc".parse::<CertName>().is_err());
        assert!("a b".parse::<CertName>().is_err());
    }

    #[test]
    fn api_urls() {
        assert!(
            "https://www.digicert.com/services/v2"
                .parse::<ApiUrl>()
                .is_ok()
        );
        assert!(
            "http://127.0.0.1:8080/services/v2"
                .parse::<ApiUrl>()
                .is_ok()
        );
        assert!("http://[::1]:8080/services/v2".parse::<ApiUrl>().is_ok());
        assert!("http://localhost/services/v2".parse::<ApiUrl>().is_ok());
        assert!("http://example.com/services/v2".parse::<ApiUrl>().is_err());
        assert!("ftp://127.0.0.1/".parse::<ApiUrl>().is_err());
        assert_eq!(
            "https://x.test/v2/"
                .parse::<ApiUrl>()
                .map(|u| u.to_string()),
            Ok("https://x.test/v2".into())
        );
    }

    #[test]
    fn api_key_is_redacted() {
        let key = ApiKey::new("s3cret");
        assert_eq!(format!("{key:?} {key}"), "ApiKey(<redacted>) <redacted>");
        assert_eq!(key.expose(), "s3cret");
    }
}
