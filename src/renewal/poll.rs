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
    pub(super) async fn poll(
        &mut self,
        attempt: Attempt,
        request: Request,
        since: i64,
        polls: u32,
    ) -> Result<Step, Failure> {
        let again = |request: Request, polls: u32, engine: &super::Engine| {
            let wait = RetryPolicy::new(engine.daemon.poll_interval, engine.daemon.poll_max)
                .with_factor(1.5)
                .delay_now(polls, None);
            Step::Pending {
                attempt: attempt.clone(),
                request,
                since,
                polls: polls.saturating_add(1),
                next_poll: unix_now().saturating_add(super::secs(wait).max(1)),
            }
        };
        let here = again(request.clone(), polls, self.engine);
        match issuer::poll(self, &attempt, &request, polls, &here).await? {
            Polled::Waiting { request, why } => {
                let next = again(request, polls, self.engine);
                if let Step::Pending { next_poll, .. } = &next {
                    let waited =
                        Duration::from_secs(u64::try_from(unix_now() - since).unwrap_or(0));
                    info!(cert = %self.cert.name, order_id = self.cert.order_id(), request_id = next.request().and_then(Request::request_id), waited = %humantime::format_duration(waited), next_poll = %fmt_time(*next_poll), "waiting for {why}");
                }
                Ok(next)
            }
            Polled::Answer(Answer::Issued { pem, request: r }) => match self.issued(&attempt, &pem)
            {
                Ok(step) => Ok(step),
                // A chain that fails the gate is looked at again later (never installed).
                Err(f) => Err(Failure::new(
                    f.error,
                    again(r.unwrap_or(request), polls, self.engine),
                )),
            },
            Polled::Answer(answer) => self.accepted(attempt, answer),
        }
    }
}
