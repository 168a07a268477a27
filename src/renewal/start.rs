//! Idle → KeyReady: is the certificate due; if a link was merely deleted, repair it instead of
//! asking the CA; hold back renewals nobody asked for that come too often; read what will be
//! renewed; generate the new key and CSR and store them (0600) before anything is sent.

use tracing::{info, warn};

use super::issuer;
use super::{Attempt, Ctx, Error, Failure, KeyCheck, Outcome, Step, assess, blocking, journal};
use crate::crypto::{self, CertFacts};
use crate::install;
use crate::model::{FileRole, fmt_time};
use crate::scheduler::{self, DueReason};
use crate::validation::{caa, dns};

/// How many renewals nobody asked for (a file missing or replaced) may start in a day.
pub(crate) const UNREQUESTED_PER_DAY: usize = 3;

/// What starting found.
pub(super) enum Started {
    /// A new attempt is under way.
    Next(Box<Step>),
    /// Nothing to start (not due, links repaired, held back).
    Done(Outcome),
}

impl Ctx<'_> {
    pub(super) async fn start(&mut self, now: i64) -> Result<Started, Failure> {
        // Blocked is a backoff that never ends: `fail` recorded it with `retry_at = i64::MAX`;
        // a changed configuration lifts it.
        if self.j.blocked.is_some() {
            if let Some(still) = self.in_backoff(now) {
                return Ok(Started::Done(still));
            }
            self.j.blocked = None;
            // The configuration changed: a failure now is news, even the same one.
            self.j.notified = None;
        }
        issuer::acme::refresh_renewal_info(self, now).await;
        let (assessment, _) = {
            let (cert, daemon, j) = (
                self.cert.clone(),
                self.engine.daemon.clone(),
                self.j.clone(),
            );
            blocking(move || assess(&cert, &daemon, &j, now, KeyCheck::Derived))
                .await
                .map_err(|e| Failure::new(e, Step::Idle))?
        };
        let due = match (self.opts.force, assessment.due) {
            (true, _) => DueReason::Forced,
            (false, Some(due)) => due,
            (false, None) => {
                let mut next_check = assessment.next_check;
                if !self.j.published.is_empty() {
                    // Cleanup failed earlier: try again soon.
                    next_check =
                        next_check.min(now + super::secs(self.engine.daemon.poll_interval));
                }
                return Ok(Started::Done(Outcome::NotDue { next_check }));
            }
        };
        // Renewals nobody asked for are limited per day; a person running `renew` is asking.
        // A reason read from files that replaced certkeeper's links (a certificate for other
        // names, or with no time left, planted at the configured paths) is nobody's request
        // either, whatever it says.
        let unasked =
            due != DueReason::Forced && (due.is_unrequested() || self.files_replaced().await?);
        let unrequested = unasked && !self.opts.ignore_backoff;
        if unasked && self.repair_links(now).await? {
            return Ok(Started::Done(Outcome::NotDue { next_check: now }));
        }
        if unrequested {
            self.j
                .unrequested
                .retain(|t| now.saturating_sub(*t) < 86_400);
            if self.j.unrequested.len() >= UNREQUESTED_PER_DAY {
                let until = self.j.unrequested.iter().min().map_or(now, |t| t + 86_400);
                return Ok(Started::Done(self.hold(
                    now,
                    until,
                    format!(
                        "{due}; certkeeper already renewed this certificate {UNREQUESTED_PER_DAY} times in 24 hours without being asked (is something deleting or replacing its files?); the next attempt is at {} (or run `certkeeper renew {}`)",
                        fmt_time(until),
                        self.cert.name
                    ),
                )?));
            }
        }
        if let Some(retry_at) = self.in_backoff(now) {
            return Ok(Started::Done(retry_at));
        }
        if let Some(note) = &assessment.note {
            warn!(cert = %self.cert.name, order_id = self.cert.order_id(), note = %note, "renewal policy adjusted");
        }
        let reason = due.to_string();
        let early_ari = matches!(due, DueReason::RenewalWindow { early: true, .. });
        info!(cert = %self.cert.name, order_id = self.cert.order_id(), %reason, "renewal due; starting");
        // Nothing goes to the CA for a certificate that could not be installed or validated.
        let (cert, dns_updates) = (self.cert.clone(), self.engine.dns_updates.clone());
        let problems = blocking(move || super::preflight::problems(&cert, &dns_updates))
            .await
            .map_err(|e| Failure::new(e, Step::Idle))?;
        if !problems.is_empty() {
            return Err(Failure::new(Error::Preflight(problems), Step::Idle));
        }
        if unrequested {
            self.j.unrequested.push(now);
        }
        let prepared = issuer::prepare(self, now).await?;
        self.caa_preflight(&prepared).await?;
        let key_type = self.cert.key_type;
        info!(cert = %self.cert.name, order_id = self.cert.order_id(), key_type = %key_type, "generating a new private key");
        let (cn, names, hash) = (
            prepared.common_name.clone(),
            prepared.names.clone(),
            prepared.hash,
        );
        let new = blocking(move || crypto::new_key_and_csr(key_type, hash, &cn, &names))
            .await
            .map_err(|e| Failure::new(e, Step::Idle))?
            .map_err(|e| Failure::new(e, Step::Idle))?;
        // The key is durable (0600) before its CSR can be sent (SPEC.md "Crash safety").
        self.store
            .write(journal::KEY, new.key_pem.as_bytes())
            .map_err(|e| Failure::new(e, Step::Idle))?;
        self.store
            .write(journal::CSR, new.csr_pem.as_bytes())
            .map_err(|e| Failure::new(e, Step::Idle))?;
        Ok(Started::Next(Box::new(Step::KeyReady {
            attempt: Attempt {
                reason,
                started: now,
                key_created: now,
                common_name: prepared.common_name,
                names: prepared.names,
                target: prepared.target,
                early_ari,
            },
        })))
    }

    /// Nothing goes to the CA for names whose CAA records forbid it (the CA would refuse them
    /// after the request). Records that cannot be read are left to the CA to judge.
    async fn caa_preflight(&self, prepared: &issuer::Prepared) -> Result<(), Failure> {
        let Some(ca) = issuer::caa_issuer(self, prepared).await? else {
            return Ok(());
        };
        let refused = match dns::resolver(self.cert.validation.resolver()).await {
            Ok(r) => caa::refusals(r, &prepared.names, &ca, &self.engine.caa).await,
            Err(e) => Err(e),
        };
        match refused {
            Ok(r) if r.is_empty() => Ok(()),
            Ok(r) => Err(Failure::new(Error::Caa(r), Step::Idle)),
            Err(e) => {
                warn!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %e, "cannot read the CAA records; leaving them to the CA");
                Ok(())
            }
        }
    }

    /// Records a reason not to renew before `until` (no failure count, no backoff growth).
    fn hold(&mut self, now: i64, until: i64, message: String) -> Result<Outcome, Failure> {
        warn!(cert = %self.cert.name, order_id = self.cert.order_id(), %message, "renewal held back");
        self.j.last_error = Some(super::LastError {
            at: now,
            step: "idle".into(),
            message: message.clone(),
            class: Some(super::RetryClass::NeedsPerson),
        });
        self.j.retry_at = Some(until);
        self.j.config_fingerprint = Some(super::fingerprint(self.cert));
        self.store
            .save(self.j)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        Ok(Outcome::Failed {
            message,
            retry_at: until,
            class: super::RetryClass::NeedsPerson,
        })
    }

    /// When the live generation is intact (valid now, key matching, names covered, not due by
    /// time) and only the links at the configured paths are gone or replaced, points them at
    /// it again. Returns whether it did.
    /// Whether certkeeper has installed this certificate and something else now stands at one
    /// of its configured paths.
    async fn files_replaced(&self) -> Result<bool, Failure> {
        let live = self.engine.live(self.cert);
        let cert = self.cert.clone();
        blocking(move || {
            let Ok(owner) =
                install::fs::resolve_owner(cert.owner.as_deref(), cert.group.as_deref())
            else {
                return false;
            };
            let trust = owner.trust();
            live.current().is_some()
                && cert
                    .files
                    .all()
                    .into_iter()
                    .any(|(role, path)| !live.is_our_link(role, path, &trust))
        })
        .await
        .map_err(|e| Failure::new(e, Step::Idle))
    }

    async fn repair_links(&mut self, now: i64) -> Result<bool, Failure> {
        let live = self.engine.live(self.cert);
        if live.current().is_none() {
            return Ok(false);
        }
        let (cert, daemon, j) = (
            self.cert.clone(),
            self.engine.daemon.clone(),
            self.j.clone(),
        );
        let intact = blocking(move || -> bool {
            let read = |role| {
                live.read_current(role)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
            };
            let (Some(cert_pem), Some(key_pem)) = (read(FileRole::Cert), read(FileRole::Key))
            else {
                return false;
            };
            let Ok(facts) = CertFacts::from_pem(&cert_pem) else {
                return false;
            };
            let state = scheduler::CertState::Present {
                not_before: facts.not_before,
                not_after: facts.not_after,
                names: facts.dns_names.clone(),
                key_matches: crypto::key_matches_verified(&key_pem, &facts),
                key_created: super::key_age(&cert, &daemon.state_dir, &j, &facts).map(|(t, _)| t),
                last_renewed: j.last_success,
            };
            let expected = cert.expected_names();
            let policy = super::policy(&cert, &daemon, &j, expected.as_deref());
            now >= facts.not_before
                && now < facts.not_after
                && scheduler::assess(&state, &policy, Some(&facts.serial), now)
                    .due
                    .is_none()
        })
        .await
        .map_err(|e| Failure::new(e, Step::Idle))?;
        if !intact {
            return Ok(false);
        }
        let owner =
            install::fs::resolve_owner(self.cert.owner.as_deref(), self.cert.group.as_deref())
                .map_err(|m| Failure::new(Error::Other(m), Step::Idle))?;
        let targets: Vec<(FileRole, std::path::PathBuf)> = self
            .cert
            .files
            .all()
            .into_iter()
            .map(|(r, p)| (r, p.to_path_buf()))
            .collect();
        let live = self.engine.live(self.cert);
        let repaired = blocking(move || {
            let t: Vec<(FileRole, &std::path::Path)> =
                targets.iter().map(|(r, p)| (*r, p.as_path())).collect();
            live.repair_links(&t, owner)
        })
        .await
        .map_err(|e| Failure::new(e, Step::Idle))?
        .map_err(|e| Failure::new(e, Step::Idle))?;
        if repaired.is_empty() {
            return Ok(false);
        }
        let paths: Vec<String> = repaired.iter().map(|p| p.display().to_string()).collect();
        info!(cert = %self.cert.name, order_id = self.cert.order_id(), paths = %paths.join(", "), "the live certificate is intact: restored its links, no new certificate needed");
        Ok(true)
    }
}
