//! The drive loop: one step at a time, each transition journaled before the next side effect;
//! failures recorded with their backoff; an attempt that no longer matches the configuration
//! abandoned. The phases themselves live in `start`, `submit`, `poll`, `validate`, `install`,
//! `deploy` and `notify`.

use tracing::{error, info};

use super::{
    Ctx, Error, Failure, LastError, Outcome, RetryClass, Step, Target, describe_issuer,
    describe_target, fingerprint, issuer, journal, secs, start, waiting_for,
};
use crate::config;
use crate::model::{fmt_time, unix_now};

impl Ctx<'_> {
    /// The drive loop: one step at a time until the renewal is done or must wait.
    pub(super) async fn drive(&mut self) -> Result<Outcome, Error> {
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
                    // Progress at the CA: a failure before it is over. An installation is
                    // not progress until it is in use: a failing deploy check or reload keeps
                    // counting, so it backs off and turns stuck like any other failure.
                    if matches!(
                        next,
                        Step::Pending { .. } | Step::Validating { .. } | Step::Issued { .. }
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
    pub(super) fn waits_until(&self) -> Option<i64> {
        match &self.j.step {
            Step::Pending { next_poll, .. } => Some(*next_poll),
            Step::Validating { validation, .. } => Some(validation.next_check),
            _ => None,
        }
    }

    pub(super) async fn waiting(&mut self, until: i64) -> Outcome {
        self.notify_if_pending_long().await;
        Outcome::Waiting {
            until,
            why: waiting_for(&self.j.step),
        }
    }

    /// While a failure's backoff runs, the outcome to report. A changed configuration skips
    /// the backoff: the operator fixed something.
    pub(super) fn in_backoff(&self, now: i64) -> Option<Outcome> {
        let j = &self.j;
        let same_config =
            || j.config_fingerprint.as_deref() == Some(fingerprint(self.cert).as_str());
        match (j.retry_at, &j.last_error) {
            (Some(at), Some(e)) if at > now && !self.opts.ignore_backoff && same_config() => {
                Some(Outcome::Failed {
                    message: e.message.clone(),
                    retry_at: at,
                    class: e.class.unwrap_or(RetryClass::Transient),
                })
            }
            _ => None,
        }
    }

    /// Saves the journal with `next` as its step (before anything else happens).
    pub(super) fn transition(&mut self, next: Step) -> Result<(), Error> {
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
    pub(super) async fn fail(&mut self, f: Failure) -> Result<Outcome, Error> {
        let now = unix_now();
        let message = f.error.to_string();
        let j = &mut *self.j;
        j.failures = j.failures.saturating_add(1);
        j.failures_total = j.failures_total.saturating_add(1);
        let class = f.error.class();
        let delay = match class {
            // Retrying soon cannot help: look again at the longest backoff.
            RetryClass::NeedsPerson => self.engine.daemon.poll_max,
            _ => self
                .engine
                .failure_backoff()
                .delay_now(j.failures - 1, f.error.retry_after()),
        };
        let mut retry_at = now.saturating_add(secs(delay).max(1));
        if class == RetryClass::NeedsConfigChange {
            j.blocked = Some(message.clone());
            retry_at = i64::MAX;
        }
        j.config_fingerprint = Some(fingerprint(self.cert));
        j.last_error = Some(LastError {
            at: now,
            step: j.step.name().to_owned(),
            message: message.clone(),
            class: Some(class),
        });
        j.retry_at = Some(retry_at);
        if matches!(*f.back_to, Step::Idle) {
            for file in [journal::KEY, journal::CSR, journal::BUNDLE] {
                self.store.remove(file);
            }
        }
        // A waiting step looks again no sooner than the failure's backoff (and the server's
        // `Retry-After`) allow: the one retry layer is this journal's.
        let mut back_to = *f.back_to;
        match &mut back_to {
            Step::Pending { next_poll, .. } => *next_poll = (*next_poll).max(retry_at),
            Step::Validating { validation, .. } => {
                validation.next_check = validation.next_check.max(retry_at);
            }
            _ => {}
        }
        self.transition(back_to)?;
        match class {
            RetryClass::NeedsConfigChange => {
                error!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %message, "renewal impossible until the configuration changes");
            }
            RetryClass::NeedsPerson => {
                error!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %message, retry_at = %fmt_time(retry_at), "renewal step failed and needs a person; will look again");
            }
            RetryClass::Transient => {
                error!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %message, retry_at = %fmt_time(retry_at), "renewal step failed; will retry");
            }
        }
        if !self.j.published.is_empty() && !matches!(self.j.step, Step::Validating { .. }) {
            self.cleanup_publications().await?;
        }
        self.notify_failure().await;
        Ok(Outcome::Failed {
            message,
            retry_at,
            class,
        })
    }

    /// Why the attempt in progress no longer matches the certificate's configuration (another
    /// order, method, issuer or names), if it does not.
    pub(super) fn attempt_mismatch(&self) -> Option<String> {
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
}
