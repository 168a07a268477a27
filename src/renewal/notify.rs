//! Failures must reach a person: `on_failure` runs when a certificate enters `failed`, and
//! again when it turns `STUCK` (blocked until the configuration changes, five failures in a
//! row, or pending for more than three days), and again for a different failure (its text,
//! digits aside, differs) or after a configuration change lifted a block; never for the same
//! failure retried. A notification counts as sent once its command started. `on_renewed` runs after
//! each completed renewal. Both are argument vectors run without a shell, with the clean
//! environment of every hook plus `CERTKEEPER_STATE`, `CERTKEEPER_ERROR` and
//! `CERTKEEPER_DAYS_LEFT`.

use tracing::{info, warn};

use super::{Ctx, Step};
use crate::hooks;
use crate::model::{fmt_time, unix_now};

/// Failures in a row after which a certificate is `STUCK`.
pub(super) const STUCK_FAILURES: u32 = 5;
/// How long a request may stay pending before the certificate is `STUCK`.
pub(super) const STUCK_PENDING_SECS: i64 = 3 * 86_400;

impl Ctx<'_> {
    /// After a failure was recorded: runs `on_failure` if the certificate just entered
    /// `failed`, or just turned `stuck`.
    pub(super) async fn notify_failure(&mut self) {
        let needs_person = self
            .j
            .last_error
            .as_ref()
            .is_some_and(|e| e.class == Some(super::RetryClass::NeedsPerson));
        let state = if self.j.blocked.is_some() || needs_person || self.j.failures >= STUCK_FAILURES
        {
            "stuck"
        } else {
            "failed"
        };
        let error = self
            .j
            .last_error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        self.notify_state(state, &error).await;
    }

    /// While waiting: a request pending for more than three days turns the certificate stuck.
    pub(super) async fn notify_if_pending_long(&mut self) {
        let since = match &self.j.step {
            Step::Pending { since, .. } => *since,
            Step::Validating { validation, .. } => validation.since,
            _ => return,
        };
        if unix_now().saturating_sub(since) > STUCK_PENDING_SECS {
            let why = format!(
                "waiting since {} for {}",
                fmt_time(since),
                super::waiting_for(&self.j.step)
            );
            self.notify_state("stuck", &why).await;
        }
    }

    async fn notify_state(&mut self, state: &str, error: &str) {
        let about = topic(error);
        let same_state = matches!(
            (self.j.notified.as_deref(), state),
            (Some("stuck"), _) | (Some("failed"), "failed")
        );
        if same_state && self.j.notified_about.as_deref() == Some(about.as_str()) {
            return;
        }
        let sent = match &self.cert.on_failure {
            None => true,
            Some(argv) => {
                let env = self.notify_env(state, error);
                info!(cert = %self.cert.name, order_id = self.cert.order_id(), state, command = %argv, "running on_failure");
                match hooks::run(argv.as_slice(), &env, self.cert.hook_timeout).await {
                    Ok(_) => true,
                    // Never started: not sent, so it is tried again at the next failure.
                    Err(e @ hooks::Error::Spawn { .. }) => {
                        warn!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %e, "on_failure could not start; trying again at the next failure");
                        false
                    }
                    Err(e) => {
                        warn!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %e, "on_failure failed");
                        true
                    }
                }
            }
        };
        if sent {
            self.j.notified = Some(state.to_owned());
            self.j.notified_about = Some(about);
            if let Err(e) = self.store.save(self.j) {
                warn!(cert = %self.cert.name, error = %e, "cannot record the notification");
            }
        }
    }

    /// After a completed renewal: runs `on_renewed`, and clears the failure notification.
    pub(super) async fn notify_renewed(&mut self, serial: &str, not_after: i64) {
        let was_notified = self.j.notified.take().is_some();
        self.j.notified_about = None;
        if was_notified && let Err(e) = self.store.save(self.j) {
            warn!(cert = %self.cert.name, error = %e, "cannot record the notification");
        }
        let Some(argv) = &self.cert.on_renewed else {
            return;
        };
        let mut env = super::deploy::hook_env(self.cert, serial, not_after);
        env.push(("CERTKEEPER_STATE".into(), "renewed".into()));
        env.push(("CERTKEEPER_DAYS_LEFT".into(), days_left(not_after)));
        info!(cert = %self.cert.name, order_id = self.cert.order_id(), command = %argv, "running on_renewed");
        if let Err(e) = hooks::run(argv.as_slice(), &env, self.cert.hook_timeout).await {
            warn!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %e, "on_renewed failed");
        }
    }

    fn notify_env(&self, state: &str, error: &str) -> Vec<(String, String)> {
        let not_after =
            crate::safefs::read_to_string(&self.cert.files.cert, crate::safefs::PEM_LIMIT)
                .ok()
                .and_then(|t| crate::crypto::CertFacts::from_pem(&t).ok())
                .map(|f| f.not_after);
        vec![
            ("CERTKEEPER_NAME".into(), self.cert.name.to_string()),
            ("CERTKEEPER_ISSUER".into(), self.cert.issuer_label()),
            (
                "CERTKEEPER_ORDER_ID".into(),
                self.cert
                    .order_id()
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
            ),
            ("CERTKEEPER_STATE".into(), state.to_owned()),
            // Hook environments are limited (E2BIG past 128 KiB): the error is cut short.
            (
                "CERTKEEPER_ERROR".into(),
                crate::model::outside_text(error, 4096),
            ),
            (
                "CERTKEEPER_DAYS_LEFT".into(),
                not_after.map(days_left).unwrap_or_default(),
            ),
        ]
    }
}

/// What a failure is about, to tell a new failure from the same one retried: its text with
/// every run of digits masked (counts, times and ports change between retries), cut short.
fn topic(error: &str) -> String {
    let mut out = String::with_capacity(error.len().min(TOPIC_LIMIT));
    for c in error.chars() {
        if out.len() >= TOPIC_LIMIT {
            break;
        }
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

/// How much of a failure's text tells it apart from another.
const TOPIC_LIMIT: usize = 256;

fn days_left(not_after: i64) -> String {
    not_after
        .saturating_sub(unix_now())
        .div_euclid(86_400)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::topic;

    #[test]
    fn a_retried_failure_is_the_same_topic_and_another_is_not() {
        assert_eq!(
            topic("CertCentral failed on POST (503), retry 3 at 12:00:07"),
            topic("CertCentral failed on POST (503), retry 4 at 12:01:15")
        );
        assert_ne!(
            topic("CertCentral answered 403: invalid api key"),
            topic("CertCentral failed on POST (503)")
        );
        assert!(topic(&"x".repeat(100_000)).len() <= super::TOPIC_LIMIT);
    }
}
