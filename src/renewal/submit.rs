//! KeyReady → Submitting → Pending, Validating or Issued; and Submitting, resumed, reconciled.
//!
//! `Submitting` is saved before the request that is not idempotent (CertCentral's reissue or
//! duplicate POST, ACME's newOrder). A resumed `Submitting` asks the CA whether it has our
//! request before anything is sent again.

use tracing::warn;

use super::issuer::{self, Answer};
use super::step::Validation;
use super::{Attempt, Ctx, Failure, Step, journal};
use crate::crypto;
use crate::model::unix_now;

impl Ctx<'_> {
    /// KeyReady → Submitting (saved) → the request → the answer.
    pub(super) async fn submit(&mut self, attempt: Attempt) -> Result<Step, Failure> {
        let back = Step::KeyReady {
            attempt: attempt.clone(),
        };
        let csr = self
            .store
            .read(journal::CSR)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        self.transition(Step::Submitting {
            attempt: attempt.clone(),
            at: unix_now(),
        })
        .map_err(|e| Failure::new(e, back))?;
        let answer = issuer::submit(self, &attempt, &csr).await?;
        self.accepted(attempt, answer)
    }

    /// Submitting, resumed: the CA has our request (wait for it) or not (send it again).
    pub(super) async fn reconcile(&mut self, attempt: Attempt) -> Result<Step, Failure> {
        match issuer::reconcile(self, &attempt).await? {
            Some(answer) => self.accepted(attempt, answer),
            None => Ok(Step::KeyReady { attempt }),
        }
    }

    /// The step an answer leads to. An issued chain is checked and stored here.
    pub(super) fn accepted(&mut self, attempt: Attempt, answer: Answer) -> Result<Step, Failure> {
        let now = unix_now();
        match answer {
            Answer::Issued { pem, request } => match self.issued(&attempt, &pem) {
                Ok(step) => Ok(step),
                Err(f) => match request {
                    // The certificate in the answer fails the checks: download it instead.
                    Some(request) => {
                        warn!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %f.error, "the certificate in the answer fails the checks; polling for it instead");
                        Ok(Step::Pending {
                            attempt,
                            request,
                            since: now,
                            polls: 0,
                            next_poll: now,
                        })
                    }
                    None => Err(f),
                },
            },
            Answer::Pending(request) => Ok(Step::Pending {
                attempt,
                request,
                since: now,
                polls: 0,
                next_poll: now,
            }),
            Answer::Validate(request) => Ok(Step::Validating {
                attempt,
                request,
                validation: Validation {
                    since: now,
                    next_check: now,
                    ..Validation::default()
                },
            }),
            Answer::Resubmit(attempt) => Ok(Step::KeyReady { attempt }),
        }
    }

    /// Checks an issued chain against the pending key and the names asked for, and stores it:
    /// → Issued.
    pub(super) fn issued(&mut self, attempt: &Attempt, pem: &str) -> Result<Step, Failure> {
        let back = Step::Idle;
        let chain = self
            .verify_bundle(attempt, pem)
            .map_err(|e| Failure::new(e, back.clone()))?;
        self.store
            .write(journal::BUNDLE, pem.as_bytes())
            .map_err(|e| Failure::new(e, back))?;
        Ok(Step::Issued {
            attempt: attempt.clone(),
            serial: chain.leaf.serial,
            not_after: chain.leaf.not_after,
            previous: self.engine.live(self.cert).current(),
        })
    }

    /// The pre-install gate, against the pending key and the names asked for.
    pub(super) fn verify_bundle(
        &self,
        attempt: &Attempt,
        pem: &str,
    ) -> Result<crypto::IssuedChain, super::Error> {
        let spki = crypto::key_spki(&self.store.read(journal::KEY)?)?;
        Ok(crypto::check_issued(
            pem,
            &spki,
            &attempt.names,
            unix_now(),
        )?)
    }
}
