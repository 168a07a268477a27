//! What can go wrong talking to CertCentral, in operator terms. The API's own
//! `{"errors":[{"code","message"}]}` is kept whole so users see what CertCentral said.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// One entry of CertCentral's error envelope (certcentral-api.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl ApiError {
    /// The code before any `|detail` or `:field` suffix, e.g. `not_found` for `not_found|order`.
    pub fn base(&self) -> &str {
        self.code.split(['|', ':']).next().unwrap_or("")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// An error from the CertCentral client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// CertCentral refused the request (4xx other than 429); do not retry as is.
    #[error("CertCentral answered {status} to {endpoint}: {}", list(.errors))]
    Api {
        endpoint: String,
        status: u16,
        errors: Vec<ApiError>,
    },
    /// Rate limited (429). Retry after `retry_after` if given, else back off from ~5 s.
    #[error("CertCentral rate limit hit on {endpoint} (429{}): {}", after(.retry_after), list(.errors))]
    RateLimited {
        endpoint: String,
        retry_after: Option<Duration>,
        errors: Vec<ApiError>,
    },
    /// A server-side failure (5xx); retryable.
    #[error("CertCentral failed on {endpoint} ({status}{}): {}", after(.retry_after), list(.errors))]
    Server {
        endpoint: String,
        status: u16,
        retry_after: Option<Duration>,
        errors: Vec<ApiError>,
    },
    /// The request did not complete (connection refused, reset, timeout).
    /// `maybe_processed` is false only when the request certainly never reached the server.
    #[error("cannot reach CertCentral for {endpoint}: {detail}")]
    Transport {
        endpoint: String,
        detail: String,
        maybe_processed: bool,
        /// The `timeout` ran out (rather than the connection failing).
        timed_out: bool,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from CertCentral to {endpoint}: {detail}")]
    Decode { endpoint: String, detail: String },
    /// The client could not be built (bad `ca_file`, bad URL).
    #[error("{0}")]
    Setup(String),
}

impl Error {
    /// Whether repeating the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Transport { .. }
        )
    }

    /// Whether the connection broke (refused, reset, closed) rather than the server answering
    /// or the timeout running out: worth one quick retry within the call.
    pub fn is_broken_connection(&self) -> bool {
        matches!(
            self,
            Self::Transport {
                timed_out: false,
                ..
            }
        )
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The API error entries, if CertCentral sent any.
    pub fn api_errors(&self) -> &[ApiError] {
        match self {
            Self::Api { errors, .. }
            | Self::RateLimited { errors, .. }
            | Self::Server { errors, .. } => errors,
            _ => &[],
        }
    }

    /// Whether CertCentral sent an error whose base code is `base`.
    pub fn has_code(&self, base: &str) -> bool {
        self.api_errors()
            .iter()
            .any(|e| e.base() == base || e.code == base)
    }

    /// Whether a POST that failed like this may nevertheless have been accepted.
    pub fn maybe_processed(&self) -> bool {
        match self {
            Self::Transport {
                maybe_processed, ..
            } => *maybe_processed,
            Self::Server { .. } | Self::Decode { .. } => true,
            Self::Api { .. } | Self::RateLimited { .. } | Self::Setup(_) => false,
        }
    }
}

fn list(errors: &[ApiError]) -> String {
    if errors.is_empty() {
        return "no error details".into();
    }
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn after(d: &Option<Duration>) -> String {
    d.map(|d| format!(", retry after {}", humantime::format_duration(d)))
        .unwrap_or_default()
}
