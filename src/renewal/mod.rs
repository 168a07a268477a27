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
//! - [`notify`]: `on_failure` and `on_renewed`.

mod deploy;
mod install;
mod issuer;
pub mod journal;
mod notify;
mod poll;
mod start;
pub mod step;
mod submit;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

pub use deploy::wait_shielded;
pub use journal::{Journal, LastError, PubState, Publication, Published, Store};
pub use step::{Attempt, OrderSnapshot, Request, Step, Target};

use crate::certcentral::{self, Client, ClientOptions, RetryPolicy};
use crate::config::{self, Certificate};
use crate::crypto::{self, CertFacts};
use crate::install::Live;
use crate::model::{CertName, fmt_time, unix_now};
use crate::scheduler::{self, Assessment, CertState, Policy};
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
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Whether retrying cannot help until the certificate's configuration changes.
    fn needs_config_change(&self) -> bool {
        matches!(self, Self::OrderEnded { .. } | Self::Config(_))
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
    Failed { message: String, retry_at: i64 },
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
}

/// How hard to check that a key matches its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// Compare the public key written inside the key file (fast; for `status`).
    Embedded,
    /// Load the private key and derive its public key, once per key and process (the daemon
    /// and `check`): a corrupted private half is noticed.
    Derived,
}

/// The facts on disk for one certificate, as the scheduler needs them. Files are read bounded
/// and without blocking on FIFOs ([`crate::safefs`]).
pub fn disk_state(
    cert: &Certificate,
    journal: &Journal,
    check: KeyCheck,
) -> (CertState, Option<CertFacts>) {
    let missing = |e: &dyn std::fmt::Display| {
        let (path, e) = (cert.files.cert.display().to_string(), e.to_string());
        // Refusals from safefs name the path already.
        CertState::Missing(if e.starts_with(&path) {
            e
        } else {
            format!("{path}: {e}")
        })
    };
    let facts = match crate::safefs::read_to_string(&cert.files.cert, crate::safefs::PEM_LIMIT) {
        Ok(text) => match CertFacts::from_pem(&text) {
            Ok(f) => f,
            Err(e) => return (missing(&e), None),
        },
        Err(e) => return (missing(&e), None),
    };
    let key_matches = crate::safefs::read_to_string(&cert.files.key, crate::safefs::PEM_LIMIT)
        .is_ok_and(|k| match check {
            KeyCheck::Embedded => crypto::key_matches(&k, &facts),
            KeyCheck::Derived => crypto::key_matches_verified(&k, &facts),
        });
    let key_created = journal.key_created.or_else(|| {
        std::fs::metadata(&cert.files.key)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok())
    });
    let state = CertState::Present {
        not_before: facts.not_before,
        not_after: facts.not_after,
        names: facts.dns_names.clone(),
        key_matches,
        key_created,
        last_renewed: journal.last_success,
    };
    (state, Some(facts))
}

/// The scheduler's policy for `cert`.
pub fn policy<'a>(
    cert: &'a Certificate,
    daemon: &config::Daemon,
    journal: &Journal,
    expected: Option<&'a [String]>,
) -> Policy<'a> {
    Policy {
        name: cert.name.as_str(),
        renew_before: cert.renew_before,
        jitter: daemon.jitter,
        rotate_key_after: cert.rotate_key_after,
        expected_names: expected,
        check_interval: daemon.check_interval,
        ari: journal.ari.as_ref().map(|a| scheduler::Ari {
            serial: a.serial.clone(),
            at: a.chosen,
        }),
    }
}

/// The scheduler's view of `cert` now.
pub fn assess(
    cert: &Certificate,
    daemon: &config::Daemon,
    journal: &Journal,
    now: i64,
    check: KeyCheck,
) -> (Assessment, Option<CertFacts>) {
    let (state, facts) = disk_state(cert, journal, check);
    let expected = cert.expected_names();
    let policy = policy(cert, daemon, journal, expected.as_deref());
    let serial = facts.as_ref().map(|f| f.serial.as_str());
    (scheduler::assess(&state, &policy, serial, now), facts)
}

/// What a reader (`status`, the metrics) sees of a certificate: its journal, or why it could
/// not be read, and the scheduler's assessment.
pub struct Observation {
    pub journal: Journal,
    /// The journal could not be read (`journal` is then the default, idle one).
    pub journal_error: Option<String>,
    pub assessment: Assessment,
    /// The installed certificate, when it can be read.
    pub facts: Option<CertFacts>,
    /// A call being retried right now, if any (not for idle certificates).
    pub retrying: Option<LastError>,
}

/// Reads `cert`'s journal and files without taking its lock, and assesses it.
pub fn observe(
    cert: &Certificate,
    daemon: &config::Daemon,
    now: i64,
    keys: KeyCheck,
) -> Observation {
    let store = Store::new(&daemon.state_dir, cert.name.as_str());
    let (journal, journal_error) = match store.load() {
        Ok(j) => (j, None),
        Err(e) => (Journal::default(), Some(e.to_string())),
    };
    let retrying = if matches!(journal.step, Step::Idle) {
        None
    } else {
        store
            .read(journal::RETRYING)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    };
    let (assessment, facts) = assess(cert, daemon, &journal, now, keys);
    Observation {
        journal,
        journal_error,
        assessment,
        facts,
        retrying,
    }
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
        j.clamp_times(unix_now(), self.max_wait());
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

impl Ctx<'_> {
    /// The drive loop: one step at a time until the renewal is done or must wait.
    async fn drive(&mut self) -> Result<Outcome, Error> {
        if let Some(why) = self.attempt_mismatch() {
            self.abandon(&why).await?;
        }
        let mut cleaned = false;
        loop {
            let now = unix_now();
            // Publications live only while validating: anything left is taken down first.
            if !cleaned
                && !self.j.published.is_empty()
                && !matches!(self.j.step, Step::Validating { .. })
            {
                self.cleanup_publications().await?;
                cleaned = true;
            }
            let step = self.j.step.clone();
            if matches!(
                step,
                Step::KeyReady { .. } | Step::Submitting { .. } | Step::Issued { .. }
            ) && let Some(backoff) = self.in_backoff(now)
            {
                return Ok(backoff);
            }
            let result = match step {
                Step::Idle => match self.start(now).await {
                    Ok(start::Started::Next(next)) => Ok(*next),
                    Ok(start::Started::Done(outcome)) => return Ok(outcome),
                    Err(f) => Err(f),
                },
                Step::KeyReady { attempt } => self.submit(attempt).await,
                Step::Submitting { attempt, .. } => self.reconcile(attempt).await,
                Step::Pending { next_poll, .. } if next_poll > now => {
                    return Ok(self.waiting(next_poll).await);
                }
                Step::Pending {
                    attempt,
                    request,
                    since,
                    polls,
                    ..
                } => self.poll(attempt, request, since, polls).await,
                Step::Validating { validation, .. } if validation.next_check > now => {
                    return Ok(self.waiting(validation.next_check).await);
                }
                Step::Validating {
                    attempt,
                    request,
                    validation,
                } => self.validate(attempt, request, validation).await,
                Step::Issued {
                    attempt,
                    serial,
                    not_after,
                    previous,
                } => self.install(attempt, serial, not_after, previous).await,
                Step::Installed {
                    attempt,
                    serial,
                    not_after,
                    generation,
                    previous,
                } => {
                    match self
                        .deploy(attempt, serial.clone(), not_after, generation, previous)
                        .await
                    {
                        Ok(None) => return Ok(Outcome::Renewed { serial, not_after }),
                        Ok(Some(rollback)) => Ok(rollback),
                        Err(f) => Err(f),
                    }
                }
                Step::RollingBack {
                    attempt,
                    serial,
                    not_after,
                    generation,
                    previous,
                    error,
                } => Err(self
                    .roll_back(attempt, serial, not_after, generation, previous, error)
                    .await),
            };
            match result {
                Ok(next) => {
                    // Progress: a failure before it is over.
                    if matches!(
                        next,
                        Step::Pending { .. }
                            | Step::Validating { .. }
                            | Step::Issued { .. }
                            | Step::Installed { .. }
                    ) && self.j.last_error.is_some()
                    {
                        self.j.last_error = None;
                        self.j.retry_at = None;
                        self.j.failures = 0;
                    }
                    self.transition(next)?;
                    // A step that waits for the CA returns at once when its time is ahead.
                    if let Some(until) = self.waits_until()
                        && until > unix_now()
                    {
                        return Ok(self.waiting(until).await);
                    }
                }
                Err(failure) => return self.fail(failure).await,
            }
        }
    }

    /// When a waiting step looks again.
    fn waits_until(&self) -> Option<i64> {
        match &self.j.step {
            Step::Pending { next_poll, .. } => Some(*next_poll),
            Step::Validating { validation, .. } => Some(validation.next_check),
            _ => None,
        }
    }

    async fn waiting(&mut self, until: i64) -> Outcome {
        self.notify_if_pending_long().await;
        Outcome::Waiting {
            until,
            why: waiting_for(&self.j.step),
        }
    }

    /// While a failure's backoff runs, the outcome to report. A changed configuration skips
    /// the backoff: the operator fixed something.
    fn in_backoff(&self, now: i64) -> Option<Outcome> {
        let j = &self.j;
        let same_config =
            || j.config_fingerprint.as_deref() == Some(fingerprint(self.cert).as_str());
        match (j.retry_at, &j.last_error) {
            (Some(at), Some(e)) if at > now && !self.opts.ignore_backoff && same_config() => {
                Some(Outcome::Failed {
                    message: e.message.clone(),
                    retry_at: at,
                })
            }
            _ => None,
        }
    }

    /// Saves the journal with `next` as its step (before anything else happens).
    fn transition(&mut self, next: Step) -> Result<(), Error> {
        let changed = self.j.step.name() != next.name();
        if let Some(end) = next
            .attempt()
            .and_then(|a| a.target.order())
            .and_then(|o| o.order_valid_till.clone())
        {
            self.j.order_valid_till = Some(end);
        }
        self.j.step = next;
        self.j.updated = unix_now();
        self.store.save(self.j)?;
        self.store.remove(journal::RETRYING);
        if changed {
            info!(cert = %self.cert.name, order_id = self.cert.order_id(), step = %self.j.step, "moved to step");
            if let Some(observe) = &self.engine.observer {
                observe(&self.cert.name, &self.j.step);
            }
        }
        Ok(())
    }

    /// Records a failure: the error, the backoff (or a block until the config changes), the step
    /// to go back to; takes down publications that are no longer needed; tells `on_failure`.
    async fn fail(&mut self, f: Failure) -> Result<Outcome, Error> {
        let now = unix_now();
        let message = f.error.to_string();
        let j = &mut *self.j;
        j.failures = j.failures.saturating_add(1);
        j.failures_total = j.failures_total.saturating_add(1);
        let delay = self
            .engine
            .failure_backoff()
            .delay_now(j.failures - 1, f.error.retry_after());
        let mut retry_at = now.saturating_add(secs(delay).max(1));
        if f.error.needs_config_change() {
            j.blocked = Some(message.clone());
            retry_at = i64::MAX;
        }
        j.config_fingerprint = Some(fingerprint(self.cert));
        j.last_error = Some(LastError {
            at: now,
            step: j.step.name().to_owned(),
            message: message.clone(),
        });
        j.retry_at = Some(retry_at);
        if matches!(*f.back_to, Step::Idle) {
            for file in [journal::KEY, journal::CSR, journal::BUNDLE] {
                self.store.remove(file);
            }
        }
        self.transition(*f.back_to)?;
        if retry_at == i64::MAX {
            error!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %message, "renewal impossible until the configuration changes");
        } else {
            error!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %message, retry_at = %fmt_time(retry_at), "renewal step failed; will retry");
        }
        if !self.j.published.is_empty() && !matches!(self.j.step, Step::Validating { .. }) {
            self.cleanup_publications().await?;
        }
        self.notify_failure().await;
        Ok(Outcome::Failed { message, retry_at })
    }

    /// Why the attempt in progress no longer matches the certificate's configuration (another
    /// order, method, issuer or names), if it does not.
    fn attempt_mismatch(&self) -> Option<String> {
        let attempt = self.j.step.attempt()?;
        let cert = self.cert;
        let issuer_matches = match (&attempt.target, &cert.issuer) {
            (Target::CertCentral(o), config::Issuer::CertCentral { order_id, method }) => {
                o.order_id == *order_id && o.method == *method
            }
            (Target::Acme(a), config::Issuer::Acme { acme, .. }) => {
                a.acme == *acme
                    && a.directory
                        == issuer::acme::directory_for(self.engine, cert).unwrap_or_default()
            }
            _ => false,
        };
        if !issuer_matches {
            return Some(format!(
                "the configuration now names {} instead of the {} this renewal was started for",
                describe_issuer(cert),
                describe_target(&attempt.target)
            ));
        }
        if let Some(expected) = cert.expected_names() {
            let mut want = expected.clone();
            let mut have = attempt.names.clone();
            want.sort();
            have.sort();
            if want != have {
                return Some(format!(
                    "the configured names ({}) differ from this renewal's ({})",
                    expected.join(", "),
                    attempt.names.join(", ")
                ));
            }
        }
        None
    }

    /// Gives up the attempt in progress (canceling the CA's request where possible), takes down
    /// its publications, and goes back to idle so that a new attempt can start.
    async fn abandon(&mut self, why: &str) -> Result<(), Error> {
        let step = self.j.step.clone();
        warn!(cert = %self.cert.name, order_id = self.cert.order_id(), step = %step, reason = %why, "abandoning the renewal in progress");
        if let (Some(attempt), Some(request)) = (step.attempt(), step.request())
            && let Err(e) = issuer::abandon(self, attempt, request).await
        {
            warn!(cert = %self.cert.name, error = %e, "cannot cancel the abandoned request at the CA; it is left to expire");
        }
        for file in [journal::KEY, journal::CSR, journal::BUNDLE] {
            self.store.remove(file);
        }
        // A block or backoff was about the old attempt, not about this configuration.
        self.j.blocked = None;
        self.j.retry_at = None;
        self.j.last_error = None;
        self.j.failures = 0;
        self.transition(Step::Idle)?;
        if !self.j.published.is_empty() {
            self.cleanup_publications().await?;
        }
        Ok(())
    }
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

/// Certificates no longer in the configuration whose state still holds work: a renewal under
/// way (a new key, a request at the CA) or records published for validation. A renamed
/// certificate leaves its state under the old name; each line says what is there and how to
/// carry it over (for `check` and the daemon's start and reloads).
pub fn unconfigured_work(config: &config::Config) -> Vec<String> {
    let state = &config.daemon.state_dir;
    let Ok(entries) = std::fs::read_dir(state.join("certs")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if config.certificate(&name).is_some() || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(j) = Store::new(state, &name).load() else {
            continue;
        };
        if matches!(j.step, Step::Idle) && j.published.is_empty() {
            continue;
        }
        let mut what = format!("step {}", j.step.name());
        if let Some(a) = j.step.attempt() {
            what.push_str(&format!(" at {}", describe_target(&a.target)));
        }
        if let Some(r) = j.step.request().and_then(Request::request_id) {
            what.push_str(&format!(", request {r}"));
        }
        if !j.published.is_empty() {
            let published: Vec<String> = j.published.iter().map(|p| p.what.describe()).collect();
            what.push_str(&format!(
                ", published for validation: {}",
                published.join(", ")
            ));
        }
        out.push(format!(
            "certificate {name:?} is no longer configured but its state holds a renewal ({what}); if it was renamed, stop certkeeper and rename {} and {} to the new name so the renewal continues under it",
            state.join("certs").join(&name).display(),
            state.join("live").join(&name).display(),
        ));
    }
    out.sort();
    out
}

/// What a waiting step waits for, for logs and `status`.
pub fn waiting_for(step: &Step) -> String {
    match step {
        Step::Pending { request, .. } => match request {
            Request::CertCentral {
                certificate_id: Some(c),
                ..
            } => format!("CertCentral to issue certificate {c}"),
            Request::CertCentral {
                request_id: Some(r),
                ..
            } => format!("CertCentral to approve and issue request {r}"),
            Request::CertCentral { .. } => "CertCentral to issue the certificate".into(),
            Request::Acme { order_url } => format!("the ACME CA to issue order {order_url}"),
        },
        Step::Validating { validation, .. } => {
            let mut s = String::from("validation");
            if !validation.unvalidated.is_empty() {
                s.push_str(&format!(" of {}", validation.unvalidated.join(", ")));
            }
            if let Some(answer) = &validation.last_answer {
                s.push_str(&format!(" ({answer})"));
            }
            s
        }
        other => format!("step {other}"),
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
