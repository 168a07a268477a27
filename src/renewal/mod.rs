//! The renewal engine: drives one certificate through the steps of [`step::Step`], composing
//! the leaves (issuers, validation publishers, crypto, install, hooks). It is the only module
//! that does.
//!
//! [`Engine::drive`] takes the certificate's lock, loads its journal and advances step by step
//! until the renewal is done, must wait (a pending request, a validation, a backoff), or is not
//! due. Every step change is saved before the next side effect. The daemon and
//! `certkeeper renew` both call it; the lock makes them safe to run together.
//!
//! One file per part of the state diagram in [`step`]:
//!
//! - [`start`]: Idle → KeyReady (is it due, can the links simply be repaired, the issuer's
//!   preparation, the new key);
//! - [`submit`]: KeyReady → Submitting → Pending / Validating / Issued, and reconciling a
//!   request whose answer was lost;
//! - [`poll`]: Pending → Issued / Validating;
//! - [`validate`]: Validating, and every publication for validation;
//! - [`install`]: Issued → Installed;
//! - [`deploy`]: Installed → Idle, or RollingBack → Issued;
//! - [`issuer`]: the seam between the steps and the CAs (CertCentral, ACME);
//! - [`notify`]: `on_failure` and `on_renewed`;
//! - [`abandon`]: giving up an attempt (the configuration changed, the certificate was
//!   removed, or a person asked);
//! - [`drive`]: the loop that runs them, journals each transition, records failures and
//!   abandons an attempt the configuration no longer asks for;
//! - [`view`]: the read-only view (facts on disk, policy, verdict) for the quick look, `status`,
//!   `check`, metrics and the daemon's schedule.

mod abandon;
mod deploy;
mod drive;
mod install;
mod issuer;
pub mod journal;
mod notify;
mod poll;
pub mod preflight;
mod start;
pub mod step;
mod submit;
mod validate;
mod view;

use std::sync::Arc;
use std::time::Duration;

pub use abandon::Abandoned;
pub use deploy::wait_shielded;
pub use journal::{Journal, LastError, PubState, Publication, Published, RetryClass, Store};
pub use step::{Attempt, OrderSnapshot, Request, Step, Target};
pub use view::{
    KeyAgeSource, KeyCheck, Observation, UnconfiguredWork, assess, disk_state, key_age, observe,
    policy, unconfigured_work, waiting_for,
};

use crate::certcentral::{self, Client, ClientOptions, RetryPolicy};
use crate::config::{self, Certificate};
use crate::crypto;
use crate::install::Live;
use crate::model::{CertName, unix_now};
use crate::{acme, validation};

/// A renewal failure, in operator terms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    State(#[from] journal::Error),
    #[error(transparent)]
    CertCentral(#[from] certcentral::Error),
    #[error(transparent)]
    Acme(#[from] acme::Error),
    #[error(transparent)]
    Crypto(#[from] crypto::Error),
    #[error(transparent)]
    Install(#[from] crate::install::Error),
    #[error(transparent)]
    Validation(#[from] validation::Error),
    #[error("{0}")]
    Hook(String),
    /// The order can no longer be renewed: a new order is needed.
    #[error(
        "order {order_id} is {status}: it can no longer be renewed; a new CertCentral order is needed"
    )]
    OrderEnded { order_id: u64, status: String },
    /// A reissue on the order that certkeeper did not start.
    #[error(
        "order {order_id} has a pending reissue that certkeeper did not start (DigiCert auto-reissue or the console); certkeeper never installs a certificate whose key it does not hold. Cancel it in CertCentral, or wait for it"
    )]
    ForeignReissue { order_id: u64 },
    /// The configuration asks for something the CA cannot give; fix the config.
    #[error("{0}")]
    Config(String),
    /// The certificate cannot be installed or validated here (a read-only folder, a missing
    /// program): a person must fix the host; retried with backoff.
    #[error("cannot install or validate here, so nothing was asked of the CA: {}", .0.join("; "))]
    Preflight(Vec<String>),
    /// The names' CAA records forbid the CA (RFC 8659): fix the records.
    #[error("CAA records forbid the CA, so nothing was asked of it: {}", .0.join("; "))]
    Caa(Vec<String>),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// What retrying can do for this failure.
    pub fn class(&self) -> RetryClass {
        use RetryClass::{NeedsConfigChange, NeedsPerson, Transient};
        match self {
            Self::OrderEnded { .. } | Self::Config(_) => NeedsConfigChange,
            Self::CertCentral(e) if e.is_retryable() => Transient,
            Self::CertCentral(certcentral::Error::Decode { .. }) => Transient,
            Self::CertCentral(_) => NeedsPerson,
            Self::Acme(e) if e.is_retryable() => Transient,
            Self::Acme(_) => NeedsPerson,
            Self::Validation(validation::Error::Dns(_)) => Transient,
            Self::Validation(_) => NeedsPerson,
            Self::State(_)
            | Self::Install(_)
            | Self::Hook(_)
            | Self::ForeignReissue { .. }
            | Self::Preflight(_)
            | Self::Caa(_) => NeedsPerson,
            Self::Crypto(_) | Self::Other(_) => Transient,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::CertCentral(e) => e.retry_after(),
            Self::Acme(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// What one call to [`Engine::drive`] ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do before `next_check`.
    NotDue { next_check: i64 },
    /// A new certificate is installed and in use.
    Renewed { serial: String, not_after: i64 },
    /// A request is pending at the CA, or a validation is under way; look again at `until`.
    Waiting { until: i64, why: String },
    /// The attempt failed; it is retried from `retry_at`.
    Failed {
        message: String,
        retry_at: i64,
        class: RetryClass,
    },
}

/// How to drive.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriveOptions {
    /// Renew even if not due.
    pub force: bool,
    /// Retry now even if a failure's backoff has not passed (a person asked).
    pub ignore_backoff: bool,
}

/// Called with every step change (for transcripts in tests and the demo).
pub type Observer = Arc<dyn Fn(&CertName, &Step) + Send + Sync>;

/// Everything a renewal needs besides the certificate's own config.
#[derive(Clone)]
pub struct Engine {
    /// The CertCentral client, when a certificate uses CertCentral.
    pub certcentral: Option<Client>,
    /// The ACME CAs of the configuration, by name.
    pub acme: Arc<acme::Registry>,
    pub daemon: config::Daemon,
    /// `[[dns_update]]` servers, by name.
    pub dns_updates: Arc<Vec<config::DnsUpdate>>,
    pub observer: Option<Observer>,
    /// CAA record sets found in the last minute.
    pub caa: Arc<validation::caa::Cache>,
}

/// Order statuses after which nothing can be renewed on the order (certcentral-api.md §3.1).
pub const ORDER_ENDED: &[&str] = &["revoked", "expired", "canceled", "rejected", "denied"];

/// A failure to record: the error, and the step to go back to.
pub(crate) struct Failure {
    error: Error,
    back_to: Box<Step>,
}

impl Failure {
    fn new(error: impl Into<Error>, back_to: Step) -> Self {
        Self {
            error: error.into(),
            back_to: Box::new(back_to),
        }
    }
}

/// One drive of one certificate: the engine, the certificate, its store and its journal.
pub(crate) struct Ctx<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) cert: &'a Certificate,
    pub(crate) store: &'a Store,
    pub(crate) j: &'a mut Journal,
    pub(crate) opts: DriveOptions,
}

impl Engine {
    pub fn new(client: Client, daemon: config::Daemon) -> Self {
        Self {
            certcentral: Some(client),
            acme: Arc::default(),
            daemon,
            dns_updates: Arc::default(),
            observer: None,
            caa: Arc::default(),
        }
    }

    /// Builds the engine a configuration describes: the CertCentral client (when a certificate
    /// uses CertCentral: API key, trust roots), the ACME CAs and the DNS update servers.
    pub fn from_config(config: &config::Config) -> Result<Self, config::ConfigError> {
        let certcentral = if config.uses_certcentral() {
            let api_key = config.certcentral.api_key(&config.path)?;
            let mut opts = ClientOptions::new(config.certcentral.url.clone(), api_key);
            opts.timeout = config.certcentral.timeout;
            if let Some(ca) = &config.certcentral.ca_file {
                opts.extra_roots_pem = Some(
                    crate::safefs::read(ca, crate::safefs::CONFIG_LIMIT).map_err(|e| {
                        config::ConfigError::new(
                            &config.path,
                            format!("cannot read ca_file {}: {e}", ca.display()),
                        )
                    })?,
                );
            }
            Some(
                Client::new(opts)
                    .map_err(|e| config::ConfigError::new(&config.path, e.to_string()))?,
            )
        } else {
            None
        };
        let acme = acme::Registry::from_config(config)?;
        Ok(Self {
            certcentral,
            acme: Arc::new(acme),
            daemon: config.daemon.clone(),
            dns_updates: Arc::new(config.dns_updates.clone()),
            observer: None,
            caa: Arc::default(),
        })
    }

    fn store(&self, cert: &Certificate) -> Store {
        Store::new(&self.daemon.state_dir, cert.name.as_str())
    }

    fn live(&self, cert: &Certificate) -> Live {
        Live::new(&self.daemon.state_dir, cert.name.as_str())
    }

    fn failure_backoff(&self) -> RetryPolicy {
        RetryPolicy::new(self.daemon.poll_interval, self.daemon.poll_max)
    }

    /// The longest any stored wait may be from now: after the clock was set back, stored
    /// instants are capped at this (a server's `Retry-After` is honoured up to an hour).
    fn max_wait(&self) -> i64 {
        secs(self.daemon.poll_max.max(Duration::from_secs(3600)))
    }

    /// Advances `cert`'s renewal as far as it can go now.
    pub async fn drive(&self, cert: &Certificate, opts: DriveOptions) -> Result<Outcome, Error> {
        let store = self.store(cert);
        // The common case, read-only and without the lock: idle, nothing published, no
        // failure, not due. Anything else is decided again under the lock, from a fresh journal.
        if !opts.force
            && let Some(quiet) = self.quick_look(cert, &store).await?
        {
            return Ok(quiet);
        }
        let _lock = store.lock().await?;
        let mut j = {
            let store = store.clone();
            blocking(move || store.load()).await??
        };
        j.clamp_times(
            unix_now(),
            self.max_wait(),
            secs(cert.validation.propagation_timeout),
        );
        let mut ctx = Ctx {
            engine: self,
            cert,
            store: &store,
            j: &mut j,
            opts,
        };
        ctx.drive().await
    }

    /// The fast path: `Some` when the certificate is idle and not due. Runs off the event loop
    /// (a file on a stalled mount blocks only its own thread).
    async fn quick_look(
        &self,
        cert: &Certificate,
        store: &Store,
    ) -> Result<Option<Outcome>, Error> {
        let (cert, daemon, store) = (cert.clone(), self.daemon.clone(), store.clone());
        blocking(move || -> Result<Option<Outcome>, Error> {
            let j = store.load()?;
            // An ACME certificate whose renewal window (ARI) is stale needs a look at the CA.
            let ari_stale =
                cert.acme().is_some() && j.ari.as_ref().is_none_or(|w| w.next_fetch <= unix_now());
            let quiet = matches!(j.step, Step::Idle)
                && j.blocked.is_none()
                && j.last_error.is_none()
                && j.published.is_empty()
                && !ari_stale;
            if !quiet {
                return Ok(None);
            }
            let (assessment, _) = assess(&cert, &daemon, &j, unix_now(), KeyCheck::Derived);
            Ok(assessment.due.is_none().then_some(Outcome::NotDue {
                next_check: assessment.next_check,
            }))
        })
        .await?
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Other(format!("a blocking task failed: {e}")))
}

/// `order 112233 (reissue)` or `ACME CA "le"`, for messages.
fn describe_issuer(cert: &Certificate) -> String {
    match &cert.issuer {
        config::Issuer::CertCentral { order_id, method } => format!("order {order_id} ({method})"),
        config::Issuer::Acme { acme, .. } => format!("ACME CA {acme:?}"),
    }
}

fn describe_target(target: &Target) -> String {
    match target {
        Target::CertCentral(o) => format!("order {} ({})", o.order_id, o.method),
        Target::Acme(a) => format!("ACME CA {:?} ({})", a.acme, a.directory),
    }
}

/// Identifies a certificate's configuration, so that a backoff or an "order ended" verdict is
/// set aside when the operator changes it (FNV-1a of its full description).
fn fingerprint(cert: &Certificate) -> String {
    format!(
        "{:016x}",
        crate::model::fnv1a(format!("{cert:?}").into_bytes())
    )
}

/// Whole seconds of `d`, saturating.
pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// `yyyy-MM-dd` → unix seconds at the end of that day (UTC).
pub fn end_of_day(s: &str) -> Option<i64> {
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp() + 86_399)
}

/// An ISO-8601 instant (`2026-12-31T16:25:52+00:00`) or a date → unix seconds.
pub fn parse_instant(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .ok()
        .or_else(|| end_of_day(s.trim()))
}

/// Failures in a row after which a certificate is `STUCK` (for `status`).
pub fn notify_stuck_failures() -> u32 {
    notify::STUCK_FAILURES
}

/// How long a request may be pending before a certificate is `STUCK` (for `status`).
pub fn notify_stuck_pending_secs() -> i64 {
    notify::STUCK_PENDING_SECS
}

/// `check --online` for the ACME CAs: the directory answers, the account exists (or would be
/// created with the EAB given), ARI and profiles offered. Returns whether all is well.
pub async fn acme_checks(engine: &Engine, config: &config::Config) -> bool {
    issuer::acme::online_checks(engine, config).await
}
