//! Certificates removed from the configuration whose state still holds work (a request at the
//! CA, records published for validation). Each is warned about at start and at every reload,
//! and abandoned once `abandon_unconfigured_after` has passed (the grace in which a renamed
//! certificate's state can be carried over to its new name) unless it is configured again.
//! Runs as a task of its own: the state folder is read on the blocking pool, and an abandon
//! (a cancel at the CA, a DNS update, a hook) never holds up the event loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::model::{CertName, fmt_time, unix_now};
use crate::renewal::{Engine, UnconfiguredWork};

/// The configuration in force, and the engine built from it.
pub(super) type Current = (Arc<Config>, Arc<Engine>);

/// Starts the task; it ends when `current`'s sender is dropped.
pub(super) fn start(mut current: watch::Receiver<Current>) {
    tokio::spawn(async move {
        // Each leftover, by name: when it was first seen, and when a failed abandon may be
        // tried again.
        let mut seen: HashMap<CertName, (i64, i64)> = HashMap::new();
        let mut rescan = true;
        loop {
            let (config, engine) = current.borrow_and_update().clone();
            let grace = i64::try_from(config.daemon.abandon_unconfigured_after.as_secs())
                .unwrap_or(i64::MAX);
            let due = |(first, retry): (i64, i64)| first.saturating_add(grace).max(retry);
            if rescan {
                let found = scan(config.clone()).await;
                let now = unix_now();
                seen.retain(|name, _| found.iter().any(|w| w.name == *name));
                for w in &found {
                    let at = due(*seen.entry(w.name.clone()).or_insert((now, now)));
                    warn!(cert = %w.name, abandon_at = %fmt_time(at), "{w}; unless it is configured again, it is abandoned then");
                }
            }
            let next = seen.values().map(|s| due(*s)).min();
            let wait =
                next.map(|at| Duration::from_secs(at.saturating_sub(unix_now()).max(0) as u64));
            tokio::select! {
                changed = current.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    rescan = true;
                    continue;
                }
                () = sleep(wait) => {}
            }
            rescan = false;
            let now = unix_now();
            let ready: Vec<(CertName, i64)> = (seen.iter())
                .filter(|(_, s)| due(**s) <= now)
                .map(|(name, (first, _))| (name.clone(), *first))
                .collect();
            for (name, first) in ready {
                seen.remove(&name);
                if config.certificate(name.as_str()).is_some() {
                    continue;
                }
                if let Some(retry) = abandon(&engine, &name).await {
                    seen.insert(name, (first, unix_now().saturating_add(retry)));
                }
            }
        }
    });
}

/// Abandons `name`'s leftovers; `Some(seconds)` when something is left to try again.
async fn abandon(engine: &Engine, name: &CertName) -> Option<i64> {
    let why = "the certificate is no longer configured";
    let retry = i64::try_from(engine.daemon.poll_max.as_secs()).unwrap_or(i64::MAX);
    match engine.abandon(name, why).await {
        Ok(Some(done)) if done.left.is_empty() => {
            info!(cert = %name, removed = done.removed.len(), "abandoned the renewal of a certificate no longer configured");
            None
        }
        Ok(Some(done)) => {
            warn!(cert = %name, left = %done.left.join("; "), "abandoned the renewal of a certificate no longer configured, but some of what was published for validation could not be removed; trying again later");
            Some(retry)
        }
        Ok(None) => None,
        Err(e) => {
            warn!(cert = %name, error = %e, "cannot abandon the renewal of a certificate no longer configured; trying again later");
            Some(retry)
        }
    }
}

async fn scan(config: Arc<Config>) -> Vec<UnconfiguredWork> {
    tokio::task::spawn_blocking(move || crate::renewal::unconfigured_work(&config))
        .await
        .unwrap_or_default()
}

async fn sleep(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
