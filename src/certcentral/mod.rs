//! The CertCentral Services API v2 client (certcentral-api.md): order info, reissue,
//! duplicate, the reissue and duplicate lists, downloads.
//!
//! Every call carries `X-DC-DEVKEY`; TLS is always verified (extra roots from `ca_file`).
//! A call is repeated at most once, after [`RECONNECT_DELAY`], and only when the connection
//! broke (refused, reset, closed): a GET always, a POST that creates something only when it
//! certainly was not processed (the connection never opened). Everything else, 429 and 5xx
//! with their `Retry-After` included, goes back to the caller, whose journal backs off: a call
//! never sleeps long while its caller holds a certificate's lock. This module knows nothing of
//! config files or state.

mod error;
pub mod limit;
pub mod model;
pub mod retry;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

pub use error::{ApiError, Error};
pub use model::*;
pub use retry::RetryPolicy;

use crate::model::{ApiKey, ApiUrl, OrderId};

/// Download formats (§4). `pem_noroot` is leaf + intermediates.
pub const FORMAT_PEM_NOROOT: &str = "pem_noroot";

/// The wait before the one repeat of a call whose connection broke.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// The largest answer accepted: CertCentral's JSON and PEM answers are KiBs.
pub const BODY_LIMIT: u64 = 1024 * 1024;

/// Called when a call fails and is about to be retried (the error, the wait before the next
/// attempt), so that a caller can show what is being retried while it happens.
pub type RetryObserver = Arc<dyn Fn(&Error, Duration) + Send + Sync>;

/// How to reach CertCentral.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub url: ApiUrl,
    pub api_key: ApiKey,
    /// Extra trust roots, PEM.
    pub extra_roots_pem: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Apply the process-wide limiter for this API key (off only for benchmarks).
    pub rate_limit: bool,
}

impl ClientOptions {
    pub fn new(url: ApiUrl, api_key: ApiKey) -> Self {
        Self {
            url,
            api_key,
            extra_roots_pem: None,
            timeout: Duration::from_secs(30),
            rate_limit: true,
        }
    }
}

/// A CertCentral API client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    /// Built at the first request: an idle daemon never pays for TLS setup and root loading.
    http: Arc<tokio::sync::OnceCell<reqwest::Client>>,
    /// Extra trust roots, parsed once.
    roots: Arc<Vec<reqwest::Certificate>>,
    opts: ClientOptions,
    limiter: Option<Arc<limit::Limiter>>,
    observer: Option<RetryObserver>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Safe to repeat: GET.
    Idempotent,
    /// Creates something: repeat only if it certainly was not processed.
    Create,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Self, Error> {
        let roots = match &opts.extra_roots_pem {
            Some(pem) => {
                let roots = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| Error::Setup(format!("cannot read ca_file: {e}")))?;
                if roots.is_empty() {
                    return Err(Error::Setup("ca_file holds no certificate".into()));
                }
                roots
            }
            None => Vec::new(),
        };
        // One budget per API key and endpoint, whichever client uses it.
        let limiter = opts.rate_limit.then(|| {
            limit::Limiter::shared(&key_fingerprint(opts.url.as_str(), opts.api_key.expose()))
        });
        Ok(Self {
            http: Arc::default(),
            roots: Arc::new(roots),
            opts,
            limiter,
            observer: None,
        })
    }

    /// Where the API key was read from (never the key).
    pub fn api_key_source(&self) -> &str {
        self.opts.api_key.source()
    }

    /// This client, reporting each retry to `observer`.
    pub fn observed(&self, observer: RetryObserver) -> Self {
        Self {
            observer: Some(observer),
            ..self.clone()
        }
    }

    async fn http(&self) -> Result<&reqwest::Client, Error> {
        self.http
            .get_or_try_init(|| async {
                let mut builder = reqwest::Client::builder()
                    .user_agent(concat!("certkeeper/", env!("CARGO_PKG_VERSION")))
                    .timeout(self.opts.timeout)
                    .connect_timeout(self.opts.timeout.min(Duration::from_secs(10)))
                    .redirect(reqwest::redirect::Policy::none());
                for root in self.roots.iter() {
                    builder = builder.add_root_certificate(root.clone());
                }
                builder
                    .build()
                    .map_err(|e| Error::Setup(format!("cannot set up HTTPS: {e}")))
            })
            .await
    }

    /// `GET /order/certificate/{order_id}`.
    pub async fn order_info(&self, order_id: OrderId) -> Result<OrderInfo, Error> {
        self.json(
            Method::GET,
            &format!("/order/certificate/{order_id}"),
            None::<&()>,
            Replay::Idempotent,
        )
        .await
    }

    /// `POST /order/certificate/{order_id}/reissue`.
    pub async fn reissue(
        &self,
        order_id: OrderId,
        req: &SubmitRequest,
    ) -> Result<SubmitResponse, Error> {
        self.json(
            Method::POST,
            &format!("/order/certificate/{order_id}/reissue"),
            Some(req),
            Replay::Create,
        )
        .await
    }

    /// `POST /order/certificate/{order_id}/duplicate`.
    pub async fn duplicate(
        &self,
        order_id: OrderId,
        req: &SubmitRequest,
    ) -> Result<SubmitResponse, Error> {
        self.json(
            Method::POST,
            &format!("/order/certificate/{order_id}/duplicate"),
            Some(req),
            Replay::Create,
        )
        .await
    }

    /// `GET /order/certificate/{order_id}/reissue`.
    pub async fn list_reissues(&self, order_id: OrderId) -> Result<CertificateList, Error> {
        self.json(
            Method::GET,
            &format!("/order/certificate/{order_id}/reissue"),
            None::<&()>,
            Replay::Idempotent,
        )
        .await
    }

    /// `GET /order/certificate/{order_id}/duplicate`.
    pub async fn list_duplicates(&self, order_id: OrderId) -> Result<CertificateList, Error> {
        self.json(
            Method::GET,
            &format!("/order/certificate/{order_id}/duplicate"),
            None::<&()>,
            Replay::Idempotent,
        )
        .await
    }

    /// `GET /certificate/{certificate_id}/download/format/{format}`: PEM text.
    pub async fn download(&self, certificate_id: u64, format: &str) -> Result<String, Error> {
        let path = format!("/certificate/{certificate_id}/download/format/{format}");
        self.call(Method::GET, &path, None::<&()>, Replay::Idempotent)
            .await
    }

    /// `GET /account`: the cheap credential check (§1).
    pub async fn account(&self) -> Result<serde_json::Value, Error> {
        self.json(Method::GET, "/account", None::<&()>, Replay::Idempotent)
            .await
    }

    /// `PUT /order/certificate/{order_id}/status` with `canceled`: cancels a pending reissue.
    pub async fn cancel_pending(&self, order_id: OrderId, note: &str) -> Result<(), Error> {
        let body = serde_json::json!({ "status": "canceled", "note": note });
        self.call(
            Method::PUT,
            &format!("/order/certificate/{order_id}/status"),
            Some(&body),
            Replay::Idempotent,
        )
        .await
        .map(drop)
    }

    /// `PUT /order/certificate/{order_id}/dcv-random-value`: the order's random value, a new
    /// one if the last expired (dcv.md).
    pub async fn dcv_random_value(&self, order_id: OrderId) -> Result<DcvRandomValue, Error> {
        self.json(
            Method::PUT,
            &format!("/order/certificate/{order_id}/dcv-random-value"),
            None::<&()>,
            Replay::Idempotent,
        )
        .await
    }

    /// `PUT /order/certificate/{order_id}/dcv-method`: switch a pending order's DCV method;
    /// token methods answer with the random value (dcv.md).
    pub async fn set_dcv_method(
        &self,
        order_id: OrderId,
        method: &str,
    ) -> Result<DcvRandomValue, Error> {
        let body = serde_json::json!({ "dcv_method": method });
        self.json(
            Method::PUT,
            &format!("/order/certificate/{order_id}/dcv-method"),
            Some(&body),
            Replay::Idempotent,
        )
        .await
    }

    /// `PUT /order/certificate/{order_id}/check-dcv`: ask CertCentral to check now. A `400`
    /// `invalid_dns_txt` or `file_random_value_not_found` means "not yet" (dcv.md).
    pub async fn check_dcv(&self, order_id: OrderId) -> Result<CheckDcv, Error> {
        self.json(
            Method::PUT,
            &format!("/order/certificate/{order_id}/check-dcv"),
            None::<&()>,
            Replay::Idempotent,
        )
        .await
    }

    /// `GET /domain/{domain_id}?include_dcv=true&include_validation=true`.
    pub async fn domain_info(&self, domain_id: u64) -> Result<DomainInfo, Error> {
        self.json(
            Method::GET,
            &format!("/domain/{domain_id}?include_dcv=true&include_validation=true"),
            None::<&()>,
            Replay::Idempotent,
        )
        .await
    }

    /// `GET /request/{request_id}`.
    pub async fn request_info(&self, request_id: u64) -> Result<RequestInfo, Error> {
        self.json(
            Method::GET,
            &format!("/request/{request_id}"),
            None::<&()>,
            Replay::Idempotent,
        )
        .await
    }

    async fn json<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        replay: Replay,
    ) -> Result<T, Error> {
        let endpoint = format!("{method} {path}");
        let text = self.call(method, path, body, replay).await?;
        serde_json::from_str(&text).map_err(|e| Error::Decode {
            endpoint,
            detail: format!("{e}; body starts {:?}", snippet(&text)),
        })
    }

    async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        replay: Replay,
    ) -> Result<String, Error> {
        let e = match self.once(method.clone(), path, body).await {
            Ok(text) => return Ok(text),
            Err(e) => e,
        };
        let repeatable = e.is_broken_connection()
            && match replay {
                Replay::Idempotent => true,
                Replay::Create => !e.maybe_processed(),
            };
        if !repeatable {
            return Err(e);
        }
        if let Some(observe) = &self.observer {
            observe(&e, RECONNECT_DELAY);
        }
        warn!(error = %e, "CertCentral connection broke; trying once more");
        tokio::time::sleep(RECONNECT_DELAY).await;
        self.once(method, path, body).await
    }

    async fn once<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<String, Error> {
        let endpoint = format!("{method} {path}");
        let counted = method.clone();
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        let mut req = self
            .http()
            .await?
            .request(method, format!("{}{path}", self.opts.url))
            .header("X-DC-DEVKEY", self.opts.api_key.expose())
            .header(
                header::ACCEPT,
                if path.contains("/download/") {
                    "*/*"
                } else {
                    "application/json"
                },
            );
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            count_request(&counted, path, 0);
            Error::Transport {
                endpoint: endpoint.clone(),
                detail: error_chain(&e),
                maybe_processed: !e.is_connect(),
                timed_out: e.is_timeout(),
            }
        })?;
        let status = resp.status();
        count_request(&counted, path, status.as_u16());
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
        let text = read_body(resp, &endpoint).await?;
        debug!(%endpoint, status = status.as_u16(), "CertCentral answered");
        if status.is_success() {
            return Ok(text);
        }
        let errors = parse_errors(&text, status);
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => Error::RateLimited {
                endpoint,
                retry_after,
                errors,
            },
            s if s.is_server_error() => Error::Server {
                endpoint,
                status: s.as_u16(),
                retry_after,
                errors,
            },
            s => Error::Api {
                endpoint,
                status: s.as_u16(),
                errors,
            },
        })
    }
}

/// Reads an answer's body, refusing one larger than [`BODY_LIMIT`] (announced or not).
async fn read_body(mut resp: reqwest::Response, endpoint: &str) -> Result<String, Error> {
    let too_big = || Error::Decode {
        endpoint: endpoint.to_owned(),
        detail: format!("the answer is larger than {BODY_LIMIT} bytes; refusing it"),
    };
    if resp.content_length().is_some_and(|n| n > BODY_LIMIT) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > BODY_LIMIT {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(Error::Transport {
                    endpoint: endpoint.to_owned(),
                    detail: error_chain(&e),
                    maybe_processed: true,
                    timed_out: e.is_timeout(),
                });
            }
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// How many of CertCentral's error entries are kept.
const MAX_API_ERRORS: usize = 5;

/// Reads the `{"errors":[…]}` envelope; tolerates `errors` as a single object (§5). At most
/// five entries, each cut short and with control characters escaped; never empty.
pub fn parse_errors(body: &str, status: StatusCode) -> Vec<ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Errors {
        Many(Vec<ApiError>),
        One(ApiError),
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Errors,
    }
    let parsed = match serde_json::from_str::<Envelope>(body) {
        Ok(Envelope {
            errors: Errors::Many(v),
        }) if !v.is_empty() => v,
        Ok(Envelope {
            errors: Errors::One(e),
        }) => vec![e],
        _ => vec![ApiError {
            code: format!("http_{}", status.as_u16()),
            message: match snippet(body) {
                s if s.is_empty() => status.canonical_reason().unwrap_or("error").to_owned(),
                s => s,
            },
        }],
    };
    // What CertCentral said, made safe to log, show and keep: a few entries, each cut short.
    parsed
        .into_iter()
        .take(MAX_API_ERRORS)
        .map(|e| ApiError {
            code: crate::model::outside_text(&e.code, 200),
            message: crate::model::outside_text(&e.message, 1000),
        })
        .collect()
}

/// Requests sent by this process: (method and path template, HTTP status or 0) → count.
static REQUESTS: std::sync::Mutex<std::collections::BTreeMap<(String, u16), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A snapshot of the request counters, for metrics: `("GET /order/certificate/{id}", 200) → n`.
pub fn request_counts() -> Vec<((String, u16), u64)> {
    let counts = REQUESTS.lock().unwrap_or_else(|p| p.into_inner());
    counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

fn count_request(method: &Method, path: &str, status: u16) {
    // Ids become `{id}` so that the label set stays small.
    let template: Vec<&str> = path
        .split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect();
    let key = (format!("{method} {}", template.join("/")), status);
    *REQUESTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
}

/// Identifies an API key without keeping it: FNV-1a of URL and key.
fn key_fingerprint(url: &str, key: &str) -> String {
    format!(
        "{:016x}",
        crate::model::fnv1a(url.bytes().chain([0]).chain(key.bytes()))
    )
}

fn snippet(s: &str) -> String {
    s.chars().take(200).collect::<String>().trim().to_owned()
}

/// reqwest's Display hides the cause ("error sending request"); operators need it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes() {
        let e = parse_errors(
            r#"{"errors":[{"code":"not_found|order","message":"nope"}]}"#,
            StatusCode::NOT_FOUND,
        );
        assert_eq!(e[0].base(), "not_found");
        let e = parse_errors(
            r#"{"errors":{"code":"x","message":"y"}}"#,
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(e[0].code, "x");
        let e = parse_errors("<html>oops</html>", StatusCode::BAD_GATEWAY);
        assert_eq!(e[0].code, "http_502");
        assert_eq!(e[0].message, "<html>oops</html>");
    }
}
