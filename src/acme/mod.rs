//! ACME (RFC 8555) CAs through instant-acme: accounts (with External Account Binding),
//! orders, authorizations and challenges, renewal information (ARI, RFC 9773), profiles.
//!
//! HTTP goes through reqwest with the same rules as the CertCentral client: TLS always
//! verified (the system's roots plus `ca_file`), timeouts, answers capped at 1 MiB. Accounts
//! are P-256 keys; their credentials (which hold the key) are returned to the caller to store
//! (0600) and restored from there. This module knows nothing of config files or state.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, BodyWrapper, BytesResponse, ExternalAccountKey, HttpClient,
    NewAccount,
};

use crate::config;

pub use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
};

/// The largest answer accepted (a certificate chain is a few KiB).
const BODY_LIMIT: usize = 1024 * 1024;

/// An error from an ACME CA, or on the way to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CA answered with a problem document (RFC 8555 §6.7).
    #[error("the ACME CA at {directory} answered: {}", crate::model::outside_text(&source.to_string(), 2000))]
    Acme {
        directory: String,
        source: Box<instant_acme::Error>,
        /// The CA's `Retry-After` on the failed answer, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Anything else, said plainly.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Whether trying again later may succeed: server errors, rate limits, a bad nonce, and
    /// failures of the connection.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Acme { source, .. } => match source.as_ref() {
                instant_acme::Error::Api(p) => {
                    p.status.is_some_and(|s| s >= 500 || s == 429)
                        || p.r#type.as_deref().is_some_and(|t| {
                            t.ends_with(":rateLimited")
                                || t.ends_with(":badNonce")
                                || t.ends_with(":serverInternal")
                        })
                }
                instant_acme::Error::Http(_)
                | instant_acme::Error::Other(_)
                | instant_acme::Error::Timeout(_) => true,
                _ => false,
            },
            Self::Other(_) => false,
        }
    }

    /// The CA's `Retry-After` on the failed answer (seen by the HTTP adapter, as instant-acme
    /// does not carry it in its errors).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Acme { retry_after, .. } => *retry_after,
            Self::Other(_) => None,
        }
    }
}

/// Requests sent to ACME CAs by this process: (host, method, HTTP status or 0) → count.
static REQUESTS: std::sync::Mutex<std::collections::BTreeMap<(String, String, u16), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A snapshot of the ACME request counters, for metrics and benchmarks.
pub fn request_counts() -> Vec<((String, String, u16), u64)> {
    let counts = REQUESTS.lock().unwrap_or_else(|p| p.into_inner());
    counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

fn count_request(host: String, method: String, status: u16) {
    *REQUESTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((host, method, status))
        .or_default() += 1;
}

/// When an issuer's CA last asked, on a failed answer, to be left alone until.
type RetryAfter = Arc<std::sync::Mutex<Option<SystemTime>>>;

/// The HTTP client instant-acme uses: reqwest, verified TLS, bounded answers. It notes the
/// `Retry-After` of failed answers for the error that follows.
struct Http {
    client: reqwest::Client,
    retry_after: RetryAfter,
}

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            use http_body_util::BodyExt;
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let url = parts.uri.to_string();
            let parts_url = url.clone();
            let (host, method) = (
                parts.uri.authority().map_or("", |a| a.as_str()).to_owned(),
                parts.method.to_string(),
            );
            let mut out = client.request(parts.method, url).headers(parts.headers);
            if !body.is_empty() {
                out = out.body(body);
            }
            let sent = out.send().await;
            let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
            tracing::debug!(%method, url = %parts_url, status, "ACME request");
            count_request(host, method, status);
            let resp = sent.map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            if !resp.status().is_success()
                && let Some(wait) = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| crate::model::parse_retry_after(v, SystemTime::now()))
            {
                *retry_after.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(SystemTime::now() + wait);
            }
            let mut builder = http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                builder = builder.header(k, v);
            }
            let data = read_limited(resp).await.map_err(|e| match e {
                ReadError::TooLarge => {
                    instant_acme::Error::Str("the ACME CA's answer is larger than 1 MiB")
                }
                ReadError::Http(e) => instant_acme::Error::Other(Box::new(e)),
            })?;
            let response = builder
                .body(http_body_util::Full::new(Bytes::from(data)))
                .map_err(instant_acme::Error::Http)?;
            Ok(BytesResponse::from(response))
        })
    }
}

/// Why an answer's body could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("the answer is larger than 1 MiB")]
    TooLarge,
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// An answer's body, refused past [`BODY_LIMIT`] (announced or not) without reading the rest.
async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut data = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if data.len() + chunk.len() > BODY_LIMIT {
            return Err(ReadError::TooLarge);
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// What a directory offers, for `check --online` and the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryInfo {
    pub renewal_info: bool,
    pub profiles: Vec<String>,
    pub eab_required: bool,
    /// `meta.caaIdentities`: the issuer domain names its CAA check accepts.
    pub caa_identities: Vec<String>,
}

impl DirectoryInfo {
    /// Reads a directory object (RFC 8555 §7.1.1); the error says what it is not.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let dir: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("is not JSON: {e}"))?;
        if dir.get("newOrder").is_none() {
            return Err("is not an ACME directory (no newOrder)".into());
        }
        Ok(Self {
            renewal_info: dir.get("renewalInfo").is_some(),
            profiles: dir["meta"]["profiles"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default(),
            eab_required: dir["meta"]["externalAccountRequired"]
                .as_bool()
                .unwrap_or(false),
            caa_identities: dir["meta"]["caaIdentities"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// One `[[acme]]` CA: its settings, an HTTP client, and its accounts by directory URL.
pub struct Issuer {
    pub config: config::Acme,
    http: reqwest::Client,
    retry_after: RetryAfter,
    accounts: tokio::sync::Mutex<HashMap<String, Account>>,
    /// What each directory offers, read once per process.
    directories: std::sync::Mutex<HashMap<String, DirectoryInfo>>,
    /// Order handles kept between the steps of a renewal in this process, by order URL: each
    /// carries the CA's last nonce, so a step needs no newNonce round trip.
    orders: std::sync::Mutex<HashMap<String, Order>>,
}

/// The ACME CAs of a configuration, by name.
#[derive(Default)]
pub struct Registry {
    issuers: HashMap<String, Issuer>,
}

impl Registry {
    pub fn from_config(config: &config::Config) -> Result<Self, config::ConfigError> {
        let mut issuers = HashMap::new();
        for a in &config.acme {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!("certkeeper/", env!("CARGO_PKG_VERSION")))
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none());
            if let Some(ca) = &a.ca_file {
                let bad = |why: String| {
                    config::ConfigError::new(
                        &config.path,
                        format!("[[acme]] {:?}: {why}", a.name.as_str()),
                    )
                };
                let pem = crate::safefs::read(ca, crate::safefs::CONFIG_LIMIT)
                    .map_err(|e| bad(format!("cannot read ca_file {}: {e}", ca.display())))?;
                let roots = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| bad(format!("ca_file {}: {e}", ca.display())))?;
                for root in roots {
                    builder = builder.add_root_certificate(root);
                }
            }
            let http = builder.build().map_err(|e| {
                config::ConfigError::new(&config.path, format!("cannot set up HTTPS: {e}"))
            })?;
            issuers.insert(
                a.name.to_string(),
                Issuer {
                    config: a.clone(),
                    http,
                    retry_after: RetryAfter::default(),
                    accounts: tokio::sync::Mutex::default(),
                    directories: std::sync::Mutex::default(),
                    orders: std::sync::Mutex::default(),
                },
            );
        }
        Ok(Self { issuers })
    }

    pub fn get(&self, name: &str) -> Option<&Issuer> {
        self.issuers.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Issuer> {
        self.issuers.values()
    }
}

/// Order handles kept at most (one per renewal in progress; more are simply not kept).
const ORDERS_KEPT: usize = 1024;

impl Issuer {
    fn http(&self) -> Box<dyn HttpClient> {
        Box::new(Http {
            client: self.http.clone(),
            retry_after: self.retry_after.clone(),
        })
    }

    /// Wraps an error from this CA with its directory and the `Retry-After` of the failed
    /// answer, if one came (taken: the next error does not inherit it).
    pub fn error(&self, directory: &str, source: instant_acme::Error) -> Error {
        let until = self
            .retry_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Error::Acme {
            directory: directory.to_owned(),
            source: Box::new(source),
            retry_after: until.and_then(|t| t.duration_since(SystemTime::now()).ok()),
        }
    }

    /// The order at `url`, fresh from the CA: the handle kept from an earlier step, refreshed,
    /// or a new one.
    pub async fn order(&self, account: &Account, url: &str) -> Result<Order, instant_acme::Error> {
        let kept = self
            .orders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url);
        match kept {
            Some(mut order) => {
                order.refresh().await?;
                Ok(order)
            }
            None => account.order(url.to_owned()).await,
        }
    }

    /// Keeps `order`'s handle for the renewal's next step.
    pub fn keep(&self, order: Order) {
        let mut orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        if orders.len() < ORDERS_KEPT {
            orders.insert(order.url().to_owned(), order);
        }
    }

    /// The account for `directory`, restored from `stored` credentials (JSON) or created (with
    /// EAB when configured). Returns the new credentials to store when one was created.
    pub async fn account(
        &self,
        directory: &str,
        stored: Option<&str>,
    ) -> Result<(Account, Option<String>), Error> {
        let mut cache = self.accounts.lock().await;
        if let Some(a) = cache.get(directory) {
            return Ok((a.clone(), None));
        }
        let (account, created) = match stored {
            Some(json) => {
                // The same account (id and key) at the directory this certificate uses
                // (DigiCert's ?action=…&orderId=N directories belong to one account).
                let mut value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
                    Error::Other(format!("the stored ACME account is corrupt: {e}"))
                })?;
                value["directory"] = serde_json::Value::String(directory.to_owned());
                let credentials: AccountCredentials =
                    serde_json::from_value(value).map_err(|e| {
                        Error::Other(format!("the stored ACME account is corrupt: {e}"))
                    })?;
                let account = Account::builder_with_http(self.http())
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| self.error(directory, e))?;
                (account, None)
            }
            None => {
                let eab = match &self.config.eab {
                    Some(eab) => Some(external_account(eab)?),
                    None => None,
                };
                let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
                let (account, credentials) = Account::builder_with_http(self.http())
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        directory.to_owned(),
                        eab.as_ref(),
                    )
                    .await
                    .map_err(|e| self.error(directory, e))?;
                let json = serde_json::to_string(&credentials)
                    .map_err(|e| Error::Other(format!("cannot encode the ACME account: {e}")))?;
                (account, Some(json))
            }
        };
        cache.insert(directory.to_owned(), account.clone());
        Ok((account, created))
    }

    /// What the directory offers (an unauthenticated GET, once per process).
    pub async fn directory_info(&self, directory: &str) -> Result<DirectoryInfo, Error> {
        let cached = self
            .directories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(directory)
            .cloned();
        if let Some(info) = cached {
            return Ok(info);
        }
        let info = self.read_directory(directory).await?;
        self.directories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(directory.to_owned(), info.clone());
        Ok(info)
    }

    async fn read_directory(&self, directory: &str) -> Result<DirectoryInfo, Error> {
        let resp = self.http.get(directory).send().await.map_err(|e| {
            Error::Other(format!("cannot reach the ACME directory {directory}: {e}"))
        })?;
        if !resp.status().is_success() {
            return Err(Error::Other(format!(
                "the ACME directory {directory} answered {}",
                resp.status()
            )));
        }
        let body = read_limited(resp).await.map_err(|e| {
            Error::Other(format!("cannot read the ACME directory {directory}: {e}"))
        })?;
        DirectoryInfo::parse(&body).map_err(|why| Error::Other(format!("{directory} {why}")))
    }
}

/// The EAB key from its file: base64url (DigiCert and others hand it out so), refused if
/// readable by others.
fn external_account(eab: &config::Eab) -> Result<ExternalAccountKey, Error> {
    use base64::Engine;
    let text = crate::safefs::read_private(&eab.hmac_key_file, "EAB HMAC key file")
        .map_err(Error::Other)?;
    let text = text.trim();
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
        .map_err(|e| {
            Error::Other(format!(
                "EAB HMAC key file {} is not base64url: {e}",
                eab.hmac_key_file.display()
            ))
        })?;
    Ok(ExternalAccountKey::new(eab.kid.clone(), &key))
}

/// The ARI identifier of a certificate (RFC 9773 §4.1): its AKI key identifier and serial.
pub fn certificate_id(der: &[u8]) -> Result<String, Error> {
    let der = rustls::pki_types::CertificateDer::from(der.to_vec());
    instant_acme::CertificateIdentifier::try_from(&der)
        .map(|id| id.to_string())
        .map_err(Error::Other)
}

/// The CA's renewal window for the certificate `der` (RFC 9773): start, end (unix seconds),
/// an explanation URL, and when to ask again.
pub async fn renewal_info(
    account: &Account,
    der: &[u8],
) -> Result<(i64, i64, Option<String>, Duration), Error> {
    let der = rustls::pki_types::CertificateDer::from(der.to_vec());
    let id = instant_acme::CertificateIdentifier::try_from(&der).map_err(Error::Other)?;
    let (info, retry_after) = account
        .renewal_info(&id)
        .await
        .map_err(|source| Error::Acme {
            directory: "renewalInfo".into(),
            source: Box::new(source),
            retry_after: None,
        })?;
    Ok((
        info.suggested_window.start.unix_timestamp(),
        info.suggested_window.end.unix_timestamp(),
        info.explanation_url,
        retry_after,
    ))
}

/// Wraps an instant-acme error with the directory it came from.
pub fn error(directory: &str, e: instant_acme::Error) -> Error {
    Error::Acme {
        directory: directory.to_owned(),
        source: Box::new(e),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::DirectoryInfo;

    /// What a directory offers is read from its `meta`; a body that is not JSON, or not a
    /// directory, is refused with the reason.
    #[test]
    fn a_directory_is_read_or_refused_with_its_reason() {
        let info = DirectoryInfo::parse(
            br#"{"newOrder":"u","renewalInfo":"r","meta":{"profiles":{"shortlived":"x"},
                "externalAccountRequired":true,"caaIdentities":["Example.COM",7]}}"#,
        )
        .expect("a directory");
        assert_eq!(
            info,
            DirectoryInfo {
                renewal_info: true,
                profiles: vec!["shortlived".into()],
                eab_required: true,
                caa_identities: vec!["example.com".into()],
            }
        );
        let no_order = DirectoryInfo::parse(br#"{"meta":{}}"#).expect_err("refused");
        assert!(no_order.contains("no newOrder"), "{no_order}");
        let html = DirectoryInfo::parse(b"<html>").expect_err("refused");
        assert!(html.starts_with("is not JSON"), "{html}");
    }
}
