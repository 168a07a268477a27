//! Giving up a renewal in progress: the CA's request canceled where the CA allows it, the
//! pending key and CSR removed, the journal back at idle, and what was published for
//! validation taken down. Three callers: the drive loop, for an attempt the configuration no
//! longer asks for ([`Ctx::abandon`]); the daemon, for a certificate removed from the
//! configuration once its grace has passed; and `certkeeper abandon NAME`
//! ([`Engine::abandon`]). The last two need nothing but the state folder: the attempt and
//! every publication describe themselves.

use tracing::{info, warn};

use super::{
    Attempt, Ctx, Engine, Error, Journal, Step, Store, blocking, issuer, journal, validate,
};
use crate::model::{CertName, OrderId, unix_now};

/// What abandoning did, for `certkeeper abandon` and the daemon's log.
#[derive(Debug, Default)]
pub struct Abandoned {
    /// The step given up (`None`: there was no attempt in progress).
    pub step: Option<String>,
    /// What became of the request at the CA, when one had been sent.
    pub request: Option<Result<&'static str, String>>,
    /// Publications taken down.
    pub removed: Vec<String>,
    /// Publications that could not be taken down, with their error; tried again at the next
    /// abandon or drive.
    pub left: Vec<String>,
}

impl Engine {
    /// Abandons whatever certificate `name`'s state holds, configured or not. `Ok(None)`: there
    /// is no state of that name.
    pub async fn abandon(&self, name: &CertName, why: &str) -> Result<Option<Abandoned>, Error> {
        let store = Store::new(&self.daemon.state_dir, name.as_str());
        if !store.dir().is_dir() {
            return Ok(None);
        }
        let _lock = store.lock().await?;
        let mut j = {
            let store = store.clone();
            blocking(move || store.load()).await??
        };
        let mut done = Abandoned::default();
        let order_id = order_id(&j.step);
        if let Some(attempt) = j.step.attempt().cloned() {
            done.step = Some(j.step.name().to_owned());
            warn!(cert = %name, order_id, step = %j.step, reason = why, "abandoning the renewal in progress");
            if j.step.request().is_some() {
                done.request = Some(cancel(self, name.as_str(), &attempt).await);
            }
            forget(&store, &mut j);
            j.step = Step::Idle;
            j.updated = unix_now();
            store.save(&j)?;
            store.remove(journal::RETRYING);
        }
        for p in j.published.clone() {
            let what = p.what.describe();
            validate::take_down(name.as_str(), order_id, &store, &mut j, &p).await;
            match j.published.iter().find(|q| q.what.same(&p.what)) {
                Some(q) => done.left.push(format!(
                    "{what}: {}",
                    q.cleanup_error.as_deref().unwrap_or("not removed")
                )),
                None => done.removed.push(what),
            }
        }
        Ok(Some(done))
    }
}

impl Ctx<'_> {
    /// Gives up the attempt in progress (canceling the CA's request where possible), takes down
    /// its publications, and goes back to idle so that a new attempt can start.
    pub(super) async fn abandon(&mut self, why: &str) -> Result<(), Error> {
        let step = self.j.step.clone();
        warn!(cert = %self.cert.name, order_id = self.cert.order_id(), step = %step, reason = %why, "abandoning the renewal in progress");
        if let Some(attempt) = step.attempt()
            && step.request().is_some()
        {
            // The outcome is logged; a request left at the CA expires there.
            let _ = cancel(self.engine, self.cert.name.as_str(), attempt).await;
        }
        forget(self.store, self.j);
        self.transition(Step::Idle)?;
        if !self.j.published.is_empty() {
            self.cleanup_publications().await?;
        }
        Ok(())
    }
}

/// Cancels the attempt's request at the CA where the CA allows it, and logs what happened.
async fn cancel(engine: &Engine, name: &str, attempt: &Attempt) -> Result<&'static str, String> {
    match issuer::abandon(engine, attempt).await {
        Ok(true) => {
            info!(cert = name, "canceled the request at the CA");
            Ok("canceled at the CA")
        }
        Ok(false) => Ok("left to expire at the CA, which has no way to cancel it"),
        Err(e) => {
            warn!(cert = name, error = %e, "cannot cancel the abandoned request at the CA; it is left to expire");
            Err(format!(
                "cannot cancel it at the CA, so it is left to expire: {e}"
            ))
        }
    }
}

/// Drops the attempt's files and everything the journal knew about it: a block or backoff was
/// about the old attempt, not about what comes next.
fn forget(store: &Store, j: &mut Journal) {
    for file in [journal::KEY, journal::CSR, journal::BUNDLE] {
        store.remove(file);
    }
    j.blocked = None;
    j.notified = None;
    j.retry_at = None;
    j.last_error = None;
    j.failures = 0;
}

fn order_id(step: &Step) -> Option<OrderId> {
    step.attempt()
        .and_then(|a| a.target.order())
        .map(|o| o.order_id)
}
