//! Pending: one look at the CA; Issued when the certificate is there (checked by the
//! pre-install gate), Validating when the CA waits for validation, else Pending again after the
//! poll backoff.

use std::time::Duration;

use tracing::info;

use super::issuer::{self, Answer, Polled};
use super::{Attempt, Ctx, Failure, Request, Step};
use crate::certcentral::RetryPolicy;
use crate::model::{fmt_time, unix_now};

impl Ctx<'_> {
    /// How long to wait between looks at the CA while it validates or issues. CertCentral
    /// works in minutes to days (approvals, its own DCV polling): from `poll_interval`, ×1.5
    /// up to `poll_max`. An ACME CA answers a ready challenge or a finalize in seconds, so
    /// ACME starts at 1 s (or `poll_interval` if shorter) and doubles up to `poll_max`, as
    /// ACME clients do.
    pub(super) fn poll_policy(&self) -> RetryPolicy {
        let daemon = &self.engine.daemon;
        match self.cert.issuer {
            crate::config::Issuer::CertCentral { .. } => {
                RetryPolicy::new(daemon.poll_interval, daemon.poll_max).with_factor(1.5)
            }
            crate::config::Issuer::Acme { .. } => RetryPolicy::new(
                daemon.poll_interval.min(Duration::from_secs(1)),
                daemon.poll_max,
            ),
        }
    }

    pub(super) async fn poll(
        &mut self,
        attempt: Attempt,
        request: Request,
        since: i64,
        polls: u32,
    ) -> Result<Step, Failure> {
        let policy = self.poll_policy();
        let again = |request: Request, polls: u32| {
            let wait = policy.delay_now(polls, None);
            Step::Pending {
                attempt: attempt.clone(),
                request,
                since,
                polls: polls.saturating_add(1),
                next_poll: unix_now().saturating_add(super::secs(wait).max(1)),
            }
        };
        let here = again(request.clone(), polls);
        match issuer::poll(self, &attempt, &request, polls, &here).await? {
            Polled::Waiting { request, why } => {
                let next = again(request, polls);
                if let Step::Pending { next_poll, .. } = &next {
                    let waited =
                        Duration::from_secs(u64::try_from(unix_now() - since).unwrap_or(0));
                    info!(cert = %self.cert.name, order_id = self.cert.order_id(), request_id = next.request().and_then(Request::request_id), waited = %humantime::format_duration(waited), next_poll = %fmt_time(*next_poll), "waiting for {why}");
                }
                Ok(next)
            }
            // Saved before the download, so that nothing says the CA is still issuing.
            Polled::Issued(request) => Ok(Step::Pending {
                attempt,
                request,
                since,
                polls,
                next_poll: unix_now(),
            }),
            Polled::Answer(Answer::Issued { pem, request: r }) => match self.issued(&attempt, &pem)
            {
                Ok(step) => Ok(step),
                // A chain that fails the gate is looked at again later (never installed).
                Err(f) => Err(Failure::new(f.error, again(r.unwrap_or(request), polls))),
            },
            Polled::Answer(answer) => self.accepted(attempt, answer),
        }
    }
}
