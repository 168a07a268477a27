//! The renewal engine: drives one certificate through the steps of [`step::Step`], composing
//! the leaves (CertCentral client, crypto, install, hooks). It is the only module that does.
//!
//! [`Engine::drive`] takes the certificate's lock, loads its journal and advances step by step
//! until the renewal is done, must wait (a pending request, a backoff), or is not due. Every
//! step change is saved before the next side effect. The daemon and `certkeeper renew` both
//! call it; the lock makes them safe to run together.

pub mod journal;
pub mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

pub use journal::{Journal, LastError, Store};
pub use step::{Attempt, OrderSnapshot, Step};

use crate::certcentral::{
    self, Client, ClientOptions, RetryPolicy, SubmitCertificate, SubmitRequest, SubmitResponse,
};
use crate::config::{self, Certificate, FileRole};
use crate::crypto::{self, CertFacts};
use crate::hooks;
use crate::install::{self, Live, Perms};
use crate::model::{CertName, Method, SignatureHash, fmt_time, name_list, unix_now};
use crate::scheduler::{self, Assessment, CertState, Policy};

/// A renewal failure, in operator terms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    State(#[from] journal::Error),
    #[error(transparent)]
    CertCentral(#[from] certcentral::Error),
    #[error(transparent)]
    Crypto(#[from] crypto::Error),
    #[error(transparent)]
    Install(#[from] install::Error),
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
    /// The configuration asks for something the order cannot give; fix the config.
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
}

/// What one call to [`Engine::drive`] ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do before `next_check`.
    NotDue { next_check: i64 },
    /// A new certificate is installed and in use.
    Renewed { serial: String, not_after: i64 },
    /// A request is pending at CertCentral; look again at `until`.
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
    pub client: Client,
    pub daemon: config::Daemon,
    pub observer: Option<Observer>,
}

/// The facts on disk for one certificate, as the scheduler needs them.
pub fn disk_state(cert: &Certificate, journal: &Journal) -> (CertState, Option<CertFacts>) {
    let facts = match std::fs::read_to_string(&cert.files.cert) {
        Ok(text) => match CertFacts::from_pem(&text) {
            Ok(f) => f,
            Err(e) => {
                return (
                    CertState::Missing(format!("{}: {e}", cert.files.cert.display())),
                    None,
                );
            }
        },
        Err(e) => {
            return (
                CertState::Missing(format!("{}: {e}", cert.files.cert.display())),
                None,
            );
        }
    };
    let key_matches =
        std::fs::read_to_string(&cert.files.key).is_ok_and(|k| crypto::key_matches(&k, &facts));
    let key_created = journal.key_created.or_else(|| {
        std::fs::metadata(&cert.files.key)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
    });
    let state = CertState::Present {
        not_before: facts.not_before,
        not_after: facts.not_after,
        names: facts.dns_names.clone(),
        key_matches,
        key_created,
    };
    (state, Some(facts))
}

/// The scheduler's view of `cert` now.
pub fn assess(
    cert: &Certificate,
    daemon: &config::Daemon,
    journal: &Journal,
    now: i64,
) -> (Assessment, Option<CertFacts>) {
    let (state, facts) = disk_state(cert, journal);
    let expected = cert.expected_names();
    let policy = Policy {
        name: cert.name.as_str(),
        renew_before: cert.renew_before,
        jitter: daemon.jitter,
        rotate_key_after: cert.rotate_key_after,
        expected_names: expected.as_deref(),
        check_interval: daemon.check_interval,
    };
    (scheduler::assess(&state, &policy, now), facts)
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
}

/// Reads `cert`'s journal and files without taking its lock, and assesses it.
pub fn observe(cert: &Certificate, daemon: &config::Daemon, now: i64) -> Observation {
    let (journal, journal_error) = match Store::new(&daemon.state_dir, cert.name.as_str()).load() {
        Ok(j) => (j, None),
        Err(e) => (Journal::default(), Some(e.to_string())),
    };
    let (assessment, facts) = assess(cert, daemon, &journal, now);
    Observation {
        journal,
        journal_error,
        assessment,
        facts,
    }
}

/// Order statuses after which nothing can be renewed on the order (certcentral-api.md §3.1).
pub const ORDER_ENDED: &[&str] = &["revoked", "expired", "canceled", "rejected", "denied"];

/// A failure to record: the error, where to go back to, and whether it is the order's end.
struct Failure {
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

impl Engine {
    pub fn new(client: Client, daemon: config::Daemon) -> Self {
        Self {
            client,
            daemon,
            observer: None,
        }
    }

    /// Builds the engine a configuration describes: API key, trust roots, client.
    pub fn from_config(config: &config::Config) -> Result<Self, config::ConfigError> {
        let api_key = config.certcentral.api_key(&config.path)?;
        let mut opts = ClientOptions::new(config.certcentral.url.clone(), api_key);
        opts.timeout = config.certcentral.timeout;
        if let Some(ca) = &config.certcentral.ca_file {
            opts.extra_roots_pem = Some(std::fs::read(ca).map_err(|e| {
                config::ConfigError::new(
                    &config.path,
                    format!("cannot read ca_file {}: {e}", ca.display()),
                )
            })?);
        }
        let client =
            Client::new(opts).map_err(|e| config::ConfigError::new(&config.path, e.to_string()))?;
        Ok(Self::new(client, config.daemon.clone()))
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

    /// Advances `cert`'s renewal as far as it can go now.
    pub async fn drive(&self, cert: &Certificate, opts: DriveOptions) -> Result<Outcome, Error> {
        let store = self.store(cert);
        // The common case, read-only and without the lock: idle and not due. Anything else is
        // decided again under the lock, from a fresh journal.
        if !opts.force {
            let j = store.load()?;
            if matches!(j.step, Step::Idle) && j.blocked.is_none() && j.last_error.is_none() {
                let (assessment, _) = assess(cert, &self.daemon, &j, unix_now());
                if assessment.due.is_none() {
                    return Ok(Outcome::NotDue {
                        next_check: assessment.next_check,
                    });
                }
            }
        }
        let _lock = store.lock().await?;
        let mut j = store.load()?;
        let mut force = opts.force;
        loop {
            let now = unix_now();
            let step = j.step.clone();
            if matches!(
                step,
                Step::KeyReady { .. } | Step::Submitting { .. } | Step::Issued { .. }
            ) && let Some(backoff) = self.in_backoff(cert, &j, now, opts)
            {
                return Ok(backoff);
            }
            let result = match step {
                Step::Idle => {
                    // Blocked is a backoff that never ends: `fail` recorded it with
                    // `retry_at = i64::MAX`; a changed configuration lifts it.
                    if j.blocked.is_some() {
                        if let Some(still) = self.in_backoff(cert, &j, now, opts) {
                            return Ok(still);
                        }
                        j.blocked = None;
                    }
                    let (assessment, _) = assess(cert, &self.daemon, &j, now);
                    let reason = match (force, assessment.due) {
                        (true, _) => "forced".to_owned(),
                        (false, Some(due)) => due.to_string(),
                        (false, None) => {
                            return Ok(Outcome::NotDue {
                                next_check: assessment.next_check,
                            });
                        }
                    };
                    if let Some(retry_at) = self.in_backoff(cert, &j, now, opts) {
                        return Ok(retry_at);
                    }
                    force = false;
                    info!(cert = %cert.name, order_id = cert.order_id, %reason, "renewal due; starting");
                    self.start(cert, &store, reason, now).await
                }
                Step::KeyReady { attempt } => self.submit(cert, &store, &mut j, attempt).await,
                Step::Submitting { attempt, .. } => self.reconcile(cert, &store, attempt).await,
                Step::Pending { next_poll, .. } if next_poll > now => {
                    return Ok(Outcome::Waiting {
                        until: next_poll,
                        why: waiting_for(&j.step),
                    });
                }
                Step::Pending {
                    attempt,
                    request_id,
                    certificate_id,
                    since,
                    polls,
                    ..
                } => {
                    self.poll(
                        cert,
                        &store,
                        attempt,
                        request_id,
                        certificate_id,
                        since,
                        polls,
                        now,
                    )
                    .await
                }
                Step::Issued {
                    attempt,
                    certificate_id,
                    serial,
                    not_after,
                    previous,
                } => {
                    self.install(
                        cert,
                        &store,
                        attempt,
                        certificate_id,
                        serial,
                        not_after,
                        previous,
                    )
                    .await
                }
                Step::Installed {
                    attempt,
                    certificate_id,
                    serial,
                    not_after,
                    generation,
                    previous,
                } => {
                    match self
                        .deploy(
                            cert,
                            &store,
                            &mut j,
                            attempt,
                            certificate_id,
                            serial.clone(),
                            not_after,
                            generation,
                            previous,
                        )
                        .await
                    {
                        Ok(()) => return Ok(Outcome::Renewed { serial, not_after }),
                        Err(f) => Err(f),
                    }
                }
            };
            match result {
                Ok(next) => {
                    let waiting = matches!(next, Step::Pending { .. });
                    self.transition(cert, &store, &mut j, next)?;
                    if waiting
                        && let Step::Pending { next_poll, .. } = &j.step
                        && *next_poll > unix_now()
                    {
                        return Ok(Outcome::Waiting {
                            until: *next_poll,
                            why: waiting_for(&j.step),
                        });
                    }
                }
                Err(failure) => return self.fail(cert, &store, &mut j, failure),
            }
        }
    }

    /// While a failure's backoff runs, the outcome to report. A changed configuration skips
    /// the backoff: the operator fixed something.
    fn in_backoff(
        &self,
        cert: &Certificate,
        j: &Journal,
        now: i64,
        opts: DriveOptions,
    ) -> Option<Outcome> {
        let same_config = || j.config_fingerprint.as_deref() == Some(fingerprint(cert).as_str());
        match (j.retry_at, &j.last_error) {
            (Some(at), Some(e)) if at > now && !opts.ignore_backoff && same_config() => {
                Some(Outcome::Failed {
                    message: e.message.clone(),
                    retry_at: at,
                })
            }
            _ => None,
        }
    }

    fn transition(
        &self,
        cert: &Certificate,
        store: &Store,
        j: &mut Journal,
        next: Step,
    ) -> Result<(), Error> {
        let changed = j.step.name() != next.name();
        if let Some(end) = next
            .attempt()
            .and_then(|a| a.order.order_valid_till.clone())
        {
            j.order_valid_till = Some(end);
        }
        j.step = next;
        j.updated = unix_now();
        store.save(j)?;
        if changed {
            info!(cert = %cert.name, order_id = cert.order_id, step = %j.step, "moved to step");
            if let Some(observe) = &self.observer {
                observe(&cert.name, &j.step);
            }
        }
        Ok(())
    }

    fn fail(
        &self,
        cert: &Certificate,
        store: &Store,
        j: &mut Journal,
        f: Failure,
    ) -> Result<Outcome, Error> {
        let now = unix_now();
        let message = f.error.to_string();
        let retry_after = match &f.error {
            Error::CertCentral(e) => e.retry_after(),
            _ => None,
        };
        j.failures = j.failures.saturating_add(1);
        j.failures_total = j.failures_total.saturating_add(1);
        let delay = self
            .failure_backoff()
            .delay_now(j.failures - 1, retry_after);
        let mut retry_at = now + delay.as_secs().max(1) as i64;
        if f.error.needs_config_change() {
            j.blocked = Some(message.clone());
            retry_at = i64::MAX;
        }
        j.config_fingerprint = Some(fingerprint(cert));
        j.last_error = Some(LastError {
            at: now,
            step: j.step.name().to_owned(),
            message: message.clone(),
        });
        j.retry_at = Some(retry_at);
        if matches!(*f.back_to, Step::Idle) {
            store.remove(journal::KEY);
            store.remove(journal::CSR);
            store.remove(journal::BUNDLE);
        }
        self.transition(cert, store, j, *f.back_to)?;
        if retry_at == i64::MAX {
            error!(cert = %cert.name, order_id = cert.order_id, error = %message, "renewal impossible until the configuration changes");
        } else {
            error!(cert = %cert.name, order_id = cert.order_id, error = %message, retry_at = %fmt_time(retry_at), "renewal step failed; will retry");
        }
        Ok(Outcome::Failed { message, retry_at })
    }

    /// Idle → KeyReady: reads the order, generates the key and CSR, stores them.
    async fn start(
        &self,
        cert: &Certificate,
        store: &Store,
        reason: String,
        now: i64,
    ) -> Result<Step, Failure> {
        let mut order = self
            .client
            .order_info(cert.order_id)
            .await
            .map_err(|e| Failure::new(e, Step::Idle))?;
        let mut status = order.status.to_ascii_lowercase();
        if cert.method == Method::Reissue
            && status == "reissue_pending"
            && cert.cancel_foreign_reissue
        {
            warn!(cert = %cert.name, order_id = cert.order_id, "canceling a pending reissue that certkeeper did not start (cancel_foreign_reissue = true)");
            self.client
                .cancel_pending(
                    cert.order_id,
                    "canceled by certkeeper: it renews this order with keys it holds",
                )
                .await
                .map_err(|e| Failure::new(e, Step::Idle))?;
            order = self
                .client
                .order_info(cert.order_id)
                .await
                .map_err(|e| Failure::new(e, Step::Idle))?;
            status = order.status.to_ascii_lowercase();
        }
        if ORDER_ENDED.contains(&status.as_str()) {
            return Err(Failure::new(
                Error::OrderEnded {
                    order_id: cert.order_id,
                    status,
                },
                Step::Idle,
            ));
        }
        if let Some(end) = order.order_valid_till.as_deref().and_then(end_of_day)
            && end < now
        {
            return Err(Failure::new(
                Error::OrderEnded {
                    order_id: cert.order_id,
                    status: format!(
                        "past its end date ({})",
                        order.order_valid_till.as_deref().unwrap_or("")
                    ),
                },
                Step::Idle,
            ));
        }
        if cert.method == Method::Reissue && status == "reissue_pending" {
            return Err(Failure::new(
                Error::ForeignReissue {
                    order_id: cert.order_id,
                },
                Step::Idle,
            ));
        }
        if !matches!(status.as_str(), "issued" | "approved") {
            warn!(cert = %cert.name, order_id = cert.order_id, %status, "unexpected order status; trying anyway");
        }
        let oc = &order.certificate;
        let common_name = cert
            .common_name
            .clone()
            .or_else(|| cert.dns_names.as_ref().and_then(|d| d.first().cloned()))
            .or_else(|| oc.common_name.clone().map(|c| c.to_ascii_lowercase()))
            .ok_or_else(|| {
                Failure::new(
                    Error::Other(format!(
                        "order {} has no common name; set common_name",
                        cert.order_id
                    )),
                    Step::Idle,
                )
            })?;
        let names = name_list(
            Some(common_name.clone()),
            cert.dns_names.as_ref().unwrap_or(&oc.dns_names),
        );
        if cert.method == Method::Duplicate {
            let on_order = name_list(
                oc.common_name.as_ref().map(|c| c.to_ascii_lowercase()),
                &oc.dns_names,
            );
            duplicate_rules(&names, &on_order).map_err(|m| {
                Failure::new(
                    Error::Config(format!(
                        "certificate {:?} (order {}): {m}",
                        cert.name.as_str(),
                        cert.order_id
                    )),
                    Step::Idle,
                )
            })?;
        }

        let hash = cert
            .signature_hash
            .or(match oc.signature_hash.as_deref() {
                Some("sha384") => Some(SignatureHash::Sha384),
                Some("sha512") => Some(SignatureHash::Sha512),
                _ => None,
            })
            .unwrap_or(SignatureHash::Sha256);
        let snapshot = OrderSnapshot {
            order_id: cert.order_id,
            method: cert.method,
            certificate_id: oc.id,
            serial: oc.serial_number.clone(),
            common_name: common_name.clone(),
            names: names.clone(),
            server_platform: cert.server_platform.or(oc.server_platform.id).unwrap_or(-1),
            signature_hash: hash.as_str().to_owned(),
            order_valid_till: order.order_valid_till.clone(),
        };
        let key_type = cert.key_type;
        info!(cert = %cert.name, order_id = cert.order_id, key_type = %key_type, "generating a new private key");
        let new = tokio::task::spawn_blocking(move || {
            crypto::new_key_and_csr(key_type, hash, &common_name, &names)
        })
        .await
        .map_err(|e| {
            Failure::new(
                Error::Other(format!("key generation task failed: {e}")),
                Step::Idle,
            )
        })?
        .map_err(|e| Failure::new(e, Step::Idle))?;
        // The key is durable (0600) before its CSR can be sent (SPEC.md "Crash safety").
        store
            .write(journal::KEY, new.key_pem.as_bytes())
            .map_err(|e| Failure::new(e, Step::Idle))?;
        store
            .write(journal::CSR, new.csr_pem.as_bytes())
            .map_err(|e| Failure::new(e, Step::Idle))?;
        Ok(Step::KeyReady {
            attempt: Attempt {
                reason,
                started: now,
                order: snapshot,
                key_created: now,
            },
        })
    }

    /// KeyReady → Submitting (saved) → the POST → Pending or Issued.
    async fn submit(
        &self,
        cert: &Certificate,
        store: &Store,
        j: &mut Journal,
        attempt: Attempt,
    ) -> Result<Step, Failure> {
        let back = Step::KeyReady {
            attempt: attempt.clone(),
        };
        let csr = store
            .read(journal::CSR)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        let submitting = Step::Submitting {
            attempt: attempt.clone(),
            at: unix_now(),
        };
        self.transition(cert, store, j, submitting.clone())
            .map_err(|e| Failure::new(e, back.clone()))?;
        let o = &attempt.order;
        let req = SubmitRequest {
            certificate: SubmitCertificate {
                common_name: o.common_name.clone(),
                dns_names: o.names.clone(),
                // "a base64-encoded string without line breaks" (certcentral-api.md §2.1).
                csr: csr.replace(['\r', '\n'], ""),
                server_platform: certcentral::PlatformRef {
                    id: o.server_platform,
                },
                signature_hash: o.signature_hash.clone(),
                cert_validity: cert
                    .cert_validity_days
                    .map(|days| certcentral::CertValidity { days }),
            },
            skip_approval: cert.skip_approval,
            comments: cert.comments.clone(),
        };
        info!(cert = %cert.name, order_id = o.order_id, method = %o.method, "sending the request to CertCentral");
        let sent = match o.method {
            Method::Reissue => self.client.reissue(o.order_id, &req).await,
            Method::Duplicate => self.client.duplicate(o.order_id, &req).await,
        };
        match sent {
            Ok(resp) => Ok(self.accepted(cert, store, attempt, resp)),
            // The request may have been accepted: stay in Submitting; resuming reconciles.
            Err(e) if e.maybe_processed() => Err(Failure::new(e, submitting)),
            Err(e) if e.is_retryable() => Err(Failure::new(e, back)),
            Err(e) if e.has_code("invalid_dns_name_on_duplicate") => {
                self.without_companion(cert, store, attempt, e)
            }
            Err(e) if e.has_code("cert_validity_exceeds_order_validity") => Err(Failure::new(
                Error::Config(format!(
                    "{e} — cert_validity_days = {} runs past the end of order {} ({}); lower it, or remove it to get the longest validity the order allows",
                    cert.cert_validity_days.unwrap_or_default(),
                    o.order_id,
                    o.order_valid_till.as_deref().unwrap_or("end date unknown")
                )),
                Step::Idle,
            )),
            Err(e) => Err(Failure::new(e, Step::Idle)),
        }
    }

    /// Some products list a free `www.`/base companion among the order's names but refuse it
    /// on a duplicate (certcentral-api.md §2.2): retry once without it, with the same key.
    fn without_companion(
        &self,
        cert: &Certificate,
        store: &Store,
        attempt: Attempt,
        e: certcentral::Error,
    ) -> Result<Step, Failure> {
        let extra = companion(&attempt.order.common_name);
        let configured = cert.dns_names.as_ref().is_some_and(|d| d.contains(&extra));
        if !attempt.order.names.contains(&extra) || configured {
            return Err(Failure::new(e, Step::Idle));
        }
        warn!(cert = %cert.name, order_id = cert.order_id, companion = %extra, "CertCentral refused the order's auto-added companion name on a duplicate; retrying once without it");
        let mut retry = attempt;
        retry.order.names.retain(|n| *n != extra);
        let key = store
            .read(journal::KEY)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        let csr = crypto::csr_for_key_pem(&key, &retry.order.common_name, &retry.order.names)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        store
            .write(journal::CSR, csr.as_bytes())
            .map_err(|e| Failure::new(e, Step::Idle))?;
        Ok(Step::KeyReady { attempt: retry })
    }

    /// Classifies a 201 (certcentral-api.md §2.1): issued at once, approved, or pending.
    fn accepted(
        &self,
        cert: &Certificate,
        store: &Store,
        attempt: Attempt,
        resp: SubmitResponse,
    ) -> Step {
        let request_id = resp.requests.first().map(|r| r.id);
        info!(cert = %cert.name, order_id = cert.order_id, request_id, certificate_id = resp.certificate_id, immediate = !resp.certificate_chain.is_empty(), "CertCentral accepted the request");
        if let (Some(certificate_id), false) =
            (resp.certificate_id, resp.certificate_chain.is_empty())
        {
            let pem: String = resp
                .certificate_chain
                .iter()
                .map(|c| format!("{}\n", c.pem.trim()))
                .collect();
            match self.verify_bundle(store, &attempt, &pem) {
                Ok(chain) => {
                    if store.write(journal::BUNDLE, pem.as_bytes()).is_ok() {
                        return Step::Issued {
                            certificate_id,
                            serial: chain.leaf.serial,
                            not_after: chain.leaf.not_after,
                            previous: self.live(cert).current(),
                            attempt,
                        };
                    }
                }
                Err(e) => {
                    warn!(cert = %cert.name, error = %e, "the certificate in the answer fails the checks; downloading it instead")
                }
            }
        }
        let now = unix_now();
        Step::Pending {
            attempt,
            request_id,
            certificate_id: resp.certificate_id,
            since: now,
            polls: 0,
            next_poll: now,
        }
    }

    /// Submitting, resumed: was our request accepted? Look for our CSR's key on the order.
    async fn reconcile(
        &self,
        cert: &Certificate,
        store: &Store,
        attempt: Attempt,
    ) -> Result<Step, Failure> {
        let stay = Step::Submitting {
            attempt: attempt.clone(),
            at: unix_now(),
        };
        let our_spki = self
            .pending_spki(store)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        let o = &attempt.order;
        let listed = self
            .find_listed(o, &our_spki)
            .await
            .map_err(|e| Failure::new(e, stay.clone()))?;
        let now = unix_now();
        if let Some(entry) = listed {
            info!(cert = %cert.name, order_id = o.order_id, certificate_id = entry.id, "the earlier request was accepted; waiting for it, not sending another");
            return Ok(Step::Pending {
                attempt,
                request_id: None,
                certificate_id: Some(entry.id),
                since: now,
                polls: 0,
                next_poll: now,
            });
        }
        info!(cert = %cert.name, order_id = o.order_id, "the earlier request never reached CertCentral; it will be sent again");
        Ok(Step::KeyReady { attempt })
    }

    /// Pending: one look at CertCentral; Issued when our certificate is there.
    #[allow(clippy::too_many_arguments)]
    async fn poll(
        &self,
        cert: &Certificate,
        store: &Store,
        attempt: Attempt,
        request_id: Option<u64>,
        certificate_id: Option<u64>,
        since: i64,
        polls: u32,
        now: i64,
    ) -> Result<Step, Failure> {
        let o = &attempt.order;
        let pending = |polls: u32| {
            let wait = RetryPolicy::new(self.daemon.poll_interval, self.daemon.poll_max)
                .with_factor(1.5)
                .delay_now(polls, None);
            Step::Pending {
                attempt: attempt.clone(),
                request_id,
                certificate_id,
                since,
                polls: polls + 1,
                next_poll: unix_now() + wait.as_secs().max(1) as i64,
            }
        };
        let retry_here = |e: certcentral::Error| Failure::new(e, pending(polls));
        let our_spki = self
            .pending_spki(store)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        let found = match o.method {
            Method::Reissue => {
                let order = self
                    .client
                    .order_info(o.order_id)
                    .await
                    .map_err(retry_here)?;
                let status = order.status.to_ascii_lowercase();
                let current = order.certificate.id;
                if ORDER_ENDED.contains(&status.as_str()) {
                    return Err(Failure::new(
                        Error::OrderEnded {
                            order_id: o.order_id,
                            status,
                        },
                        Step::Idle,
                    ));
                }
                let issued = matches!(status.as_str(), "issued" | "approved");
                match certificate_id {
                    // We know our certificate's id: done when the order shows it.
                    Some(id) if issued && current == Some(id) => Some(id),
                    // The reissue trap: "issued" with the old certificate means nothing yet.
                    None if issued && current.is_some() && current != o.certificate_id => current,
                    // Issued but not (yet) ours: look for our request in the reissue list.
                    _ if issued => self
                        .listed_state(o, &our_spki)
                        .await
                        .map_err(retry_here)?
                        .map_err(|e| Failure::new(e, Step::Idle))?,
                    _ => None,
                }
            }
            Method::Duplicate => self
                .listed_state(o, &our_spki)
                .await
                .map_err(retry_here)?
                .map_err(|e| Failure::new(e, Step::Idle))?,
        };
        let Some(id) = found else {
            let next = pending(polls);
            if let Step::Pending { next_poll, .. } = &next {
                info!(cert = %cert.name, order_id = o.order_id, request_id, waited = %humantime::format_duration(Duration::from_secs((now - since).max(0) as u64)), next_poll = %fmt_time(*next_poll), "waiting for CertCentral to issue the certificate (approval or validation)");
            }
            return Ok(next);
        };
        info!(cert = %cert.name, order_id = o.order_id, certificate_id = id, "certificate issued; downloading");
        let pem = self
            .client
            .download(id, certcentral::FORMAT_PEM_NOROOT)
            .await
            .map_err(retry_here)?;
        let chain = self
            .verify_bundle(store, &attempt, &pem)
            .map_err(|e| Failure::new(e, pending(polls)))?;
        store
            .write(journal::BUNDLE, pem.as_bytes())
            .map_err(|e| Failure::new(e, pending(polls)))?;
        Ok(Step::Issued {
            certificate_id: id,
            serial: chain.leaf.serial,
            not_after: chain.leaf.not_after,
            previous: self.live(cert).current(),
            attempt,
        })
    }

    /// Our request in the order's reissue or duplicate list, found by the key in its CSR.
    async fn find_listed(
        &self,
        o: &OrderSnapshot,
        our_spki: &[u8],
    ) -> Result<Option<certcentral::ListedCertificate>, certcentral::Error> {
        let list = match o.method {
            Method::Reissue => self.client.list_reissues(o.order_id).await,
            Method::Duplicate => self.client.list_duplicates(o.order_id).await,
        }?;
        Ok(list
            .certificates
            .into_iter()
            .find(|c| csr_matches(c.csr.as_deref(), our_spki)))
    }

    /// Where our listed request stands: its certificate id once issued (duplicates show
    /// `approved`, §3.3; both count), an error once rejected, else nothing yet.
    async fn listed_state(
        &self,
        o: &OrderSnapshot,
        our_spki: &[u8],
    ) -> Result<Result<Option<u64>, Error>, certcentral::Error> {
        Ok(match self.find_listed(o, our_spki).await? {
            Some(e) if e.status.eq_ignore_ascii_case("rejected") => Err(Error::Other(format!(
                "CertCentral rejected the {} request on order {}",
                o.method, o.order_id
            ))),
            Some(e)
                if matches!(
                    e.status.to_ascii_lowercase().as_str(),
                    "issued" | "approved"
                ) =>
            {
                Ok(Some(e.id))
            }
            _ => Ok(None),
        })
    }

    fn pending_spki(&self, store: &Store) -> Result<Vec<u8>, Error> {
        Ok(crypto::key_spki(&store.read(journal::KEY)?)?)
    }

    /// The pre-install gate, against the pending key and the names asked for.
    fn verify_bundle(
        &self,
        store: &Store,
        attempt: &Attempt,
        pem: &str,
    ) -> Result<crypto::IssuedChain, Error> {
        let spki = self.pending_spki(store)?;
        Ok(crypto::check_issued(
            pem,
            &spki,
            &attempt.order.names,
            unix_now(),
        )?)
    }

    /// Issued → Installed: writes a generation and switches to it atomically.
    #[allow(clippy::too_many_arguments)]
    async fn install(
        &self,
        cert: &Certificate,
        store: &Store,
        attempt: Attempt,
        certificate_id: u64,
        serial: String,
        not_after: i64,
        previous: Option<String>,
    ) -> Result<Step, Failure> {
        let here = Step::Issued {
            attempt: attempt.clone(),
            certificate_id,
            serial: serial.clone(),
            not_after,
            previous: previous.clone(),
        };
        let fail_here = |e: Error| Failure::new(e, here.clone());
        let key_pem = store.read(journal::KEY).map_err(|e| fail_here(e.into()))?;
        let bundle = store
            .read(journal::BUNDLE)
            .map_err(|e| fail_here(e.into()))?;
        let chain = self
            .verify_bundle(store, &attempt, &bundle)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        let owner = install::fs::resolve_owner(cert.owner.as_deref(), cert.group.as_deref())
            .map_err(|m| fail_here(Error::Other(m)))?;
        let perms = Perms {
            owner,
            key_mode: cert.key_mode,
            cert_mode: cert.cert_mode,
        };
        let files: Vec<(FileRole, Vec<u8>)> = cert
            .files
            .all()
            .into_iter()
            .map(|(role, _)| {
                let bytes = match role {
                    FileRole::Key => key_pem.clone(),
                    FileRole::Cert => chain.cert_pem(),
                    FileRole::Chain => chain.chain_pem(),
                    FileRole::Fullchain => chain.fullchain_pem(),
                    FileRole::Combined => format!("{}{}", key_pem, chain.fullchain_pem()),
                };
                (role, bytes.into_bytes())
            })
            .collect();
        let live = self.live(cert);
        let generation = serial.clone();
        let targets = cert.files.all();
        let stage_live = live.clone();
        let gen2 = generation.clone();
        let targets_owned: Vec<(FileRole, PathBuf)> =
            targets.iter().map(|(r, p)| (*r, p.to_path_buf())).collect();
        let activated = tokio::task::spawn_blocking(move || {
            stage_live.stage(&gen2, &files, &perms)?;
            let t: Vec<(FileRole, &Path)> = targets_owned
                .iter()
                .map(|(r, p)| (*r, p.as_path()))
                .collect();
            stage_live.activate(&gen2, &t)
        })
        .await
        .map_err(|e| fail_here(Error::Other(format!("install task failed: {e}"))))?
        .map_err(|e| fail_here(e.into()))?;
        // After a crash between the switch and the journal, `activated` is our own generation.
        let previous = if activated.as_deref() == Some(generation.as_str()) {
            previous
        } else {
            activated
        };
        info!(cert = %cert.name, order_id = cert.order_id, serial = %serial, not_after = %fmt_time(not_after), "installed the new certificate and key");
        Ok(Step::Installed {
            attempt,
            certificate_id,
            serial,
            not_after,
            generation,
            previous,
        })
    }

    /// Installed → Idle: deploy check, reload; on failure, restore the previous set.
    #[allow(clippy::too_many_arguments)]
    async fn deploy(
        &self,
        cert: &Certificate,
        store: &Store,
        j: &mut Journal,
        attempt: Attempt,
        certificate_id: u64,
        serial: String,
        not_after: i64,
        generation: String,
        previous: Option<String>,
    ) -> Result<(), Failure> {
        let env = hook_env(cert, &serial, not_after);
        if let Err(e) = self.put_in_use(cert, &attempt, &env).await {
            let live = self.live(cert);
            warn!(cert = %cert.name, order_id = cert.order_id, error = %e, previous = previous.as_deref().unwrap_or("none"), "deployment failed; restoring the previous files");
            if let Err(re) = live.restore(previous.as_deref(), &cert.files.all()) {
                error!(cert = %cert.name, error = %re, "cannot restore the previous files");
            }
            if let Some(reload) = &cert.reload {
                let env = hook_env(cert, "", 0);
                if let Err(re) = hooks::run(reload.as_slice(), &env, cert.hook_timeout).await {
                    error!(cert = %cert.name, error = %re, "reload after restoring the previous files failed");
                }
            }
            return Err(Failure::new(
                e,
                Step::Issued {
                    attempt,
                    certificate_id,
                    serial,
                    not_after,
                    previous,
                },
            ));
        }
        let live = self.live(cert);
        let mut keep = vec![generation.as_str()];
        keep.extend(previous.as_deref());
        live.prune(&keep);
        store.remove(journal::KEY);
        store.remove(journal::CSR);
        store.remove(journal::BUNDLE);
        j.failures = 0;
        j.last_error = None;
        j.retry_at = None;
        j.last_success = Some(unix_now());
        j.key_created = Some(attempt.key_created);
        self.transition(cert, store, j, Step::Idle)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        info!(cert = %cert.name, order_id = cert.order_id, serial = %serial, not_after = %fmt_time(not_after), reason = %attempt.reason, "renewal complete");
        Ok(())
    }
}

impl Engine {
    /// Runs `deploy_check` and `reload`, then checks `verify_endpoint`: the renewal is done
    /// only when the service is known to use the new certificate, where that can be checked.
    async fn put_in_use(
        &self,
        cert: &Certificate,
        attempt: &Attempt,
        env: &[(String, String)],
    ) -> Result<(), Error> {
        for (what, argv) in [
            ("deploy_check", &cert.deploy_check),
            ("reload", &cert.reload),
        ] {
            let Some(argv) = argv else { continue };
            info!(cert = %cert.name, order_id = cert.order_id, hook = what, command = %argv, "running hook");
            match hooks::run(argv.as_slice(), env, cert.hook_timeout).await {
                Ok(out) if out.output.trim().is_empty() => {}
                Ok(out) => {
                    info!(cert = %cert.name, hook = what, output = %out.output.trim(), "hook output")
                }
                Err(e) => return Err(Error::Hook(format!("{what} failed: {e}"))),
            }
        }
        let Some(endpoint) = &cert.verify_endpoint else {
            return Ok(());
        };
        let installed = std::fs::read_to_string(&cert.files.cert)
            .map_err(|e| Error::Other(format!("cannot read {}: {e}", cert.files.cert.display())))?;
        let leaf = CertFacts::from_pem(&installed)?;
        let sni = server_name(&attempt.order);
        info!(cert = %cert.name, order_id = cert.order_id, %endpoint, %sni, "waiting for the server to present the new certificate");
        let patience = cert.hook_timeout.min(Duration::from_secs(15));
        crate::probe::wait_for_leaf(&endpoint.host, endpoint.port, &sni, &leaf.der, patience)
            .await
            .map_err(|e| Error::Hook(format!("verify_endpoint failed: {e}")))?;
        info!(cert = %cert.name, order_id = cert.order_id, %endpoint, serial = %leaf.serial, "the server presents the new certificate");
        Ok(())
    }
}

/// The SNI for `verify_endpoint`: the common name, or for a wildcard the first plain name.
fn server_name(order: &OrderSnapshot) -> String {
    order
        .names
        .iter()
        .find(|n| !n.starts_with("*."))
        .cloned()
        .unwrap_or_else(|| order.common_name.replacen("*.", "www.", 1))
}

/// What a pending step waits for, for logs and `status`.
pub fn waiting_for(step: &Step) -> String {
    match step {
        Step::Pending {
            request_id,
            certificate_id,
            ..
        } => match (request_id, certificate_id) {
            (_, Some(c)) => format!("CertCentral to issue certificate {c}"),
            (Some(r), None) => format!("CertCentral to approve and issue request {r}"),
            (None, None) => "CertCentral to issue the certificate".into(),
        },
        other => format!("step {other}"),
    }
}

/// The variables hooks see (never the API key).
fn hook_env(cert: &Certificate, serial: &str, not_after: i64) -> Vec<(String, String)> {
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    vec![
        ("CERTKEEPER_NAME".into(), cert.name.to_string()),
        (
            "CERTKEEPER_CERT_FILE".into(),
            cert.files.cert.display().to_string(),
        ),
        (
            "CERTKEEPER_KEY_FILE".into(),
            cert.files.key.display().to_string(),
        ),
        ("CERTKEEPER_CHAIN_FILE".into(), path(&cert.files.chain)),
        (
            "CERTKEEPER_FULLCHAIN_FILE".into(),
            path(&cert.files.fullchain),
        ),
        ("CERTKEEPER_SERIAL".into(), serial.to_owned()),
        (
            "CERTKEEPER_NOT_AFTER".into(),
            if not_after > 0 {
                fmt_time(not_after)
            } else {
                String::new()
            },
        ),
    ]
}

/// Whether a CSR listed by CertCentral carries our key. Comparing keys, not text, survives
/// CertCentral re-wrapping the PEM (certcentral-api.md §3.3).
fn csr_matches(listed: Option<&str>, our_spki: &[u8]) -> bool {
    listed
        .and_then(|text| crypto::csr_spki(text).ok())
        .is_some_and(|spki| spki == our_spki)
}

/// A duplicate must keep the order's names: each name must be on the order (a SAN may become
/// the common name), or be a single-label subdomain of one of its wildcards
/// (certcentral-api.md §2.2).
fn duplicate_rules(wanted: &[String], on_order: &[String]) -> Result<(), String> {
    let covered = |n: &String| {
        on_order.contains(n)
            || on_order.iter().any(|o| {
                o.strip_prefix("*.").is_some_and(|base| {
                    n.split_once('.')
                        .is_some_and(|(label, rest)| rest == base && label != "*")
                })
            })
    };
    let bad: Vec<&str> = wanted
        .iter()
        .filter(|n| !covered(n))
        .map(String::as_str)
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "a duplicate may only use the order's names ({}) or single-label subdomains of its wildcards, but common_name/dns_names ask for {}; fix common_name/dns_names or leave them out to use the order's",
        on_order.join(", "),
        bad.join(", ")
    ))
}

/// The free `www.`/base companion CertCentral adds to some orders (certcentral-api.md §2.2).
fn companion(common_name: &str) -> String {
    match common_name.strip_prefix("www.") {
        Some(base) => base.to_owned(),
        None => format!("www.{common_name}"),
    }
}

/// `yyyy-MM-dd` → unix seconds at the end of that day (UTC).
pub fn end_of_day(s: &str) -> Option<i64> {
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp() + 86_399)
}

/// Identifies a certificate's configuration, so that a backoff or an "order ended" verdict is
/// set aside when the operator changes it (FNV-1a of its full description).
fn fingerprint(cert: &Certificate) -> String {
    format!(
        "{:016x}",
        crate::model::fnv1a(format!("{cert:?}").into_bytes())
    )
}
