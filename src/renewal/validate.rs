//! Validating: publish what the CA checks, wait until DNS shows it, ask the CA to check, and
//! keep checking with the poll backoff; and every publication's life cycle.
//!
//! A publication is written to the journal as `publishing` *before* its side effect (a file
//! under `http_root`, a `dns_publish` command, an RFC 2136 update) and marked `published`
//! after it. A resumed `publishing` entry is published again (each publisher is idempotent)
//! before anything else, so nothing is ever cleaned up that was never published, and nothing
//! published is forgotten. Publications are taken down (and dropped from the journal) when
//! they are no longer wanted: after the CA validated the names, after a failure or an abandon,
//! after a crash. A cleanup that fails is kept and tried again at the next drive.

use std::time::Duration;

use tracing::{info, warn};

use super::issuer::{self, Checked, Wanted, WantedKind};
use super::journal::{PubState, Publication, Published};
use super::step::Validation;
use super::{Attempt, Ctx, Error, Failure, Journal, Request, Step, Store};
use crate::certcentral::RetryPolicy;
use crate::config::{DnsCheck, DnsPublisher};
use crate::hooks;
use crate::model::{OrderId, unix_now};
use crate::validation::{DnsRecord, dns, rfc2136, webroot};

/// How often to look for DNS propagation: from 2 s, growing to 30 s.
const PROPAGATION_POLL: RetryPolicy =
    RetryPolicy::new(Duration::from_secs(2), Duration::from_secs(30));

impl Ctx<'_> {
    pub(super) async fn validate(
        &mut self,
        attempt: Attempt,
        request: Request,
        v: Validation,
    ) -> Result<Step, Failure> {
        let now = unix_now();
        let here = Step::Validating {
            attempt: attempt.clone(),
            request: request.clone(),
            validation: Validation {
                next_check: now.saturating_add(self.check_delay(v.checks)),
                ..v.clone()
            },
        };
        // 1. What must be published now (the random value, the challenges).
        let round = issuer::round(self, &attempt, &request, &here).await?;
        if let Some(done) = round.done {
            return self.accepted(attempt, done);
        }
        let request = round.request;
        let here = |v: Validation| Step::Validating {
            attempt: attempt.clone(),
            request: request.clone(),
            validation: v,
        };
        // 2. Publish it (each record journaled first); take down what is no longer wanted.
        let wanted = self
            .publications_for(&round.records)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        if let Err(e) = self.publish_all(&wanted).await {
            let v = Validation {
                next_check: now.saturating_add(self.check_delay(v.checks)),
                last_answer: Some(e.to_string()),
                ..v
            };
            return Err(Failure::new(e, here(v)));
        }
        // 3. DNS: wait until the records are visible where the CA will look. A record seen
        //    once and gone since (a zone reload, a hand edit) is published again and waited for.
        let mut v = v;
        if wanted.iter().any(|p| p.what.dns_record().is_some()) {
            let mut missing = self
                .not_yet_visible(&wanted)
                .await
                .map_err(|e| Failure::new(e, here(v.clone())))?;
            if let Some((gone, at)) = &missing
                && v.visible
            {
                warn!(cert = %self.cert.name, order_id = self.cert.order_id(), record = %gone, "the {} record for {} was visible and is gone at {at}; publishing it again", gone.rtype, gone.name);
                for p in wanted.iter().filter(|p| p.what.dns_record() == Some(gone)) {
                    publish(self.cert.name.as_str(), p)
                        .await
                        .map_err(|e| Failure::new(e, here(v.clone())))?;
                }
                v.visible = false;
                v.propagation_deadline = None;
                missing = self
                    .not_yet_visible(&wanted)
                    .await
                    .map_err(|e| Failure::new(e, here(v.clone())))?;
            }
            let deadline = *v.propagation_deadline.get_or_insert(
                now.saturating_add(super::secs(self.cert.validation.propagation_timeout)),
            );
            match missing {
                None => v.visible = true,
                Some((first, at)) => {
                    let answer = format!(
                        "{} record for {} not yet visible at {at}",
                        first.rtype, first.name
                    );
                    if now < deadline {
                        info!(cert = %self.cert.name, order_id = self.cert.order_id(), record = %first, "{answer}");
                        let wait = super::secs(PROPAGATION_POLL.delay_now(v.checks, None)).max(1);
                        return Ok(here(Validation {
                            next_check: now.saturating_add(wait).min(deadline),
                            checks: v.checks.saturating_add(1),
                            last_answer: Some(answer),
                            ..v
                        }));
                    }
                    if !v.asked {
                        warn!(cert = %self.cert.name, order_id = self.cert.order_id(), record = %first, "{answer} after dns_propagation_timeout; asking the CA anyway");
                    }
                }
            }
        }
        // 4. Ask the CA to check.
        let asked_here = here(v.clone());
        match issuer::check(self, &attempt, &request, v.asked, &asked_here).await? {
            Checked::Done(answer) => {
                info!(cert = %self.cert.name, order_id = self.cert.order_id(), "the CA validated every name");
                self.accepted(attempt, *answer)
            }
            Checked::NotYet {
                answer,
                unvalidated,
            } => {
                let next = now.saturating_add(self.check_delay(v.checks));
                info!(cert = %self.cert.name, order_id = self.cert.order_id(), names = %unvalidated.join(", "), next_check = %crate::model::fmt_time(next), "the CA has not validated the names yet: {answer}");
                v.asked = true;
                Ok(here(Validation {
                    checks: v.checks.saturating_add(1),
                    next_check: next,
                    last_answer: Some(answer),
                    unvalidated,
                    ..v
                }))
            }
        }
    }

    /// The wait before the next check: the poll backoff.
    fn check_delay(&self, checks: u32) -> i64 {
        super::secs(self.poll_policy().delay_now(checks, None)).max(1)
    }

    /// What the configured publishers make of what the CA wants.
    fn publications_for(&self, records: &[Wanted]) -> Result<Vec<Publication>, Error> {
        let validation = &self.cert.validation;
        let method_name = match &self.cert.issuer {
            crate::config::Issuer::CertCentral { .. } => validation.dcv_method.as_str().to_owned(),
            crate::config::Issuer::Acme { challenge, .. } => challenge.as_str().to_owned(),
        };
        let mut out = Vec::with_capacity(records.len());
        for w in records {
            let what = match &w.what {
                WantedKind::File { path, content } => {
                    let root = validation
                        .http_root
                        .clone()
                        .ok_or_else(|| Error::Config(format!("{method_name} needs http_root")))?;
                    Published::File {
                        root,
                        path: path.clone(),
                        content: content.clone(),
                        created_dirs: Vec::new(),
                    }
                }
                WantedKind::Dns(record) => match &validation.dns {
                    Some(DnsPublisher::Hooks { publish, cleanup }) => Published::Hook {
                        record: record.clone(),
                        publish: publish.as_slice().to_vec(),
                        cleanup: cleanup.as_ref().map(|c| c.as_slice().to_vec()),
                        method: method_name.clone(),
                        timeout_secs: self.cert.hook_timeout.as_secs(),
                    },
                    Some(DnsPublisher::Update(name)) => {
                        let u = self
                            .engine
                            .dns_updates
                            .iter()
                            .find(|u| u.name.as_str() == name)
                            .ok_or_else(|| {
                                Error::Config(format!("no [[dns_update]] named {name:?}"))
                            })?;
                        Published::Update {
                            record: record.clone(),
                            server: u.server.0.host.clone(),
                            port: u.server.0.port,
                            key_file: u.tsig_key_file.clone(),
                            zone: u.zone.clone(),
                        }
                    }
                    None => {
                        return Err(Error::Config(format!(
                            "{method_name} needs dns_publish or dns_update"
                        )));
                    }
                },
            };
            out.push(Publication {
                domain: w.domain.clone(),
                what,
                state: PubState::Publishing,
                cleanup_error: None,
            });
        }
        Ok(out)
    }

    /// Makes the journal's publications exactly `wanted`: what is no longer wanted is taken
    /// down, what is missing (or was interrupted) is published, each recorded first.
    async fn publish_all(&mut self, wanted: &[Publication]) -> Result<(), Error> {
        let stale: Vec<Publication> = self
            .j
            .published
            .iter()
            .filter(|p| !wanted.iter().any(|w| w.what.same(&p.what)))
            .cloned()
            .collect();
        for p in stale {
            self.take_down(&p).await;
        }
        for w in wanted {
            let existing = self.j.published.iter().position(|p| p.what.same(&w.what));
            let index = match existing {
                Some(i) if self.j.published[i].state == PubState::Published => {
                    if in_place(&self.j.published[i])? {
                        continue;
                    }
                    let mut p = self.j.published[i].clone();
                    warn!(cert = %self.cert.name, order_id = self.cert.order_id(), domain = %p.domain, at = %p.what.describe(), "what was published for validation is gone (deleted or overwritten); publishing it again");
                    self.plan_dirs(&mut p)?;
                    self.j.published[i] = p;
                    self.store.save(self.j)?;
                    i
                }
                Some(i) => i,
                None => {
                    let mut p = w.clone();
                    self.plan_dirs(&mut p)?;
                    self.j.published.push(p);
                    self.store.save(self.j)?;
                    self.j.published.len() - 1
                }
            };
            let p = self.j.published[index].clone();
            info!(cert = %self.cert.name, order_id = self.cert.order_id(), domain = %p.domain, at = %p.what.describe(), "publishing for validation");
            publish(self.cert.name.as_str(), &p).await?;
            self.j.published[index].state = PubState::Published;
            self.store.save(self.j)?;
        }
        Ok(())
    }

    /// Records in a file publication the folders that publishing it will create (and those
    /// this certificate's other publications created, which hold it too: whichever is taken
    /// down last removes them), before they are created.
    fn plan_dirs(&self, p: &mut Publication) -> Result<(), Error> {
        let Published::File {
            root,
            path,
            created_dirs,
            ..
        } = &mut p.what
        else {
            return Ok(());
        };
        let others = self.j.published.iter().filter_map(|o| match &o.what {
            Published::File {
                root: r,
                created_dirs: dirs,
                ..
            } if r == root => Some(dirs),
            _ => None,
        });
        for d in webroot::missing_dirs(root, path)?
            .into_iter()
            .chain(others.flatten().cloned())
        {
            if !created_dirs.contains(&d) {
                created_dirs.push(d);
            }
        }
        Ok(())
    }

    /// Takes down every publication (after issuance, a failure, an abandon, a crash). One that
    /// cannot be taken down stays in the journal, with its error, for the next drive.
    pub(super) async fn cleanup_publications(&mut self) -> Result<(), Error> {
        let all = self.j.published.clone();
        for p in all {
            self.take_down(&p).await;
        }
        Ok(())
    }

    /// Takes one publication down and records it ([`take_down`]).
    async fn take_down(&mut self, p: &Publication) {
        take_down(
            self.cert.name.as_str(),
            self.cert.order_id(),
            self.store,
            self.j,
            p,
        )
        .await;
    }

    /// The first DNS publication not yet visible where `dns_propagation_check` says, with
    /// where it is missing (one line for the log, `status` and the journal).
    async fn not_yet_visible(
        &self,
        pubs: &[Publication],
    ) -> Result<Option<(DnsRecord, String)>, Error> {
        let validation = &self.cert.validation;
        let resolver = dns::resolver(validation.resolver()).await?;
        let mut records: Vec<&DnsRecord> =
            pubs.iter().filter_map(|p| p.what.dns_record()).collect();
        records.dedup();
        for record in records {
            let missing_at = match validation.dns_check {
                DnsCheck::Resolver => {
                    let values = dns::lookup(resolver, &record.name, record.rtype).await?;
                    (!dns::holds(&values, record)).then(|| resolver.to_string())
                }
                DnsCheck::Authoritative => {
                    let lacking = dns::lacking(&dns::authoritative(resolver, record).await?);
                    (!lacking.is_empty()).then(|| lacking.join(", "))
                }
            };
            if let Some(at) = missing_at {
                return Ok(Some((record.clone(), at)));
            }
        }
        Ok(None)
    }
}

/// The variables `dns_publish` and `dns_cleanup` see (SPEC.md "Domain validation"), and
/// nothing else of certkeeper's.
fn hook_env(name: &str, method: &str, domain: &str, record: &DnsRecord) -> Vec<(String, String)> {
    vec![
        ("CERTKEEPER_NAME".into(), name.to_owned()),
        ("CERTKEEPER_DCV_METHOD".into(), method.to_owned()),
        ("CERTKEEPER_DCV_DOMAIN".into(), domain.to_owned()),
        ("CERTKEEPER_DCV_RECORD_NAME".into(), record.name.clone()),
        (
            "CERTKEEPER_DCV_RECORD_TYPE".into(),
            record.rtype.as_str().to_owned(),
        ),
        ("CERTKEEPER_DCV_RECORD_VALUE".into(), record.value.clone()),
    ]
}

async fn updater(
    server: &str,
    port: u16,
    key_file: &std::path::Path,
    zone: &Option<String>,
) -> Result<rfc2136::Updater, Error> {
    let addr = dns::server_addr(server, port).await?;
    let key = rfc2136::TsigKey::load(key_file)?;
    Ok(rfc2136::Updater::new(addr, key, zone.clone()))
}

/// Whether a publication recorded as published is still there. A file is read back; DNS
/// records are looked up where the CA looks, in [`Ctx::validate`].
fn in_place(p: &Publication) -> Result<bool, Error> {
    match &p.what {
        Published::File {
            root,
            path,
            content,
            ..
        } => Ok(webroot::holds(root, path, content)?),
        Published::Hook { .. } | Published::Update { .. } => Ok(true),
    }
}

/// Takes one publication down (completing an interrupted publication first) and drops it
/// from the journal; on failure records the error on it instead. Everything it needs is in the
/// publication itself, so it works for a certificate no longer configured.
pub(super) async fn take_down(
    name: &str,
    order_id: Option<OrderId>,
    store: &Store,
    j: &mut Journal,
    p: &Publication,
) {
    let mut result = Ok(());
    if p.state == PubState::Publishing {
        // Perhaps published before a crash: complete it, so that what is cleaned up was
        // certainly published.
        result = publish(name, p).await;
    }
    if result.is_ok() {
        result = unpublish(name, p).await;
    }
    let index = j.published.iter().position(|q| q.what.same(&p.what));
    match result {
        Ok(()) => {
            info!(cert = name, order_id, domain = %p.domain, at = %p.what.describe(), "removed what was published for validation");
            if let Some(i) = index {
                j.published.remove(i);
            }
        }
        Err(e) => {
            warn!(cert = name, order_id, domain = %p.domain, at = %p.what.describe(), error = %e, "cannot remove what was published for validation; trying again later");
            if let Some(i) = index {
                j.published[i].cleanup_error = Some(e.to_string());
            }
        }
    }
    if let Err(e) = store.save(j) {
        warn!(cert = name, error = %e, "cannot record the cleanup");
    }
}

/// Publishes one record or file (idempotent).
async fn publish(name: &str, p: &Publication) -> Result<(), Error> {
    match &p.what {
        Published::File {
            root,
            path,
            content,
            ..
        } => Ok(webroot::publish(root, path, content)?),
        Published::Hook {
            record,
            publish,
            method,
            timeout_secs,
            ..
        } => {
            let env = hook_env(name, method, &p.domain, record);
            hooks::run(publish, &env, Duration::from_secs(*timeout_secs))
                .await
                .map(drop)
                .map_err(|e| Error::Hook(format!("dns_publish failed for {record}: {e}")))
        }
        Published::Update {
            record,
            server,
            port,
            key_file,
            zone,
        } => Ok(updater(server, *port, key_file, zone)
            .await?
            .add(record)
            .await?),
    }
}

/// Takes one record or file down (a missing one is fine).
async fn unpublish(name: &str, p: &Publication) -> Result<(), Error> {
    match &p.what {
        Published::File {
            root,
            path,
            content,
            created_dirs,
        } => Ok(webroot::remove(root, path, content, created_dirs)?),
        Published::Hook {
            record,
            cleanup,
            method,
            timeout_secs,
            ..
        } => {
            let Some(cleanup) = cleanup else {
                warn!(cert = name, record = %record, "no dns_cleanup is configured: the record stays; remove it by hand");
                return Ok(());
            };
            let env = hook_env(name, method, &p.domain, record);
            hooks::run(cleanup, &env, Duration::from_secs(*timeout_secs))
                .await
                .map(drop)
                .map_err(|e| Error::Hook(format!("dns_cleanup failed for {record}: {e}")))
        }
        Published::Update {
            record,
            server,
            port,
            key_file,
            zone,
        } => Ok(updater(server, *port, key_file, zone)
            .await?
            .delete(record)
            .await?),
    }
}
