//! Installed → Idle: `deploy_check`, `reload`, `verify_endpoint`; a renewal is done only when
//! the service is known to use the new certificate, where that can be checked.
//!
//! When one of them fails, `RollingBack` is saved first, then the previous generation is
//! restored and `reload` runs again, then the failure is recorded (back to `Issued`, retried
//! with backoff). A rollback interrupted by a crash is finished at the next start; a graceful
//! stop waits for a rollback or an installation in progress ([`shielded`]). A resumed
//! `Installed` deploys only if its generation is the live one.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::{Attempt, Ctx, Error, Failure, Step, journal};
use crate::config::Certificate;
use crate::hooks;
use crate::install;
use crate::model::{fmt_time, unix_now};

/// Work in progress that a graceful stop waits for.
static SHIELDED: AtomicUsize = AtomicUsize::new(0);
static SHIELD_DONE: Notify = Notify::const_new();

/// Runs `work` to completion even if the caller is cancelled (the daemon stopping): it runs
/// in a task of its own, and [`wait_shielded`] lets the daemon wait for it.
pub(crate) async fn shielded<F>(work: F) -> Result<F::Output, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    SHIELDED.fetch_add(1, Ordering::SeqCst);
    let handle = tokio::spawn(async move {
        let out = work.await;
        SHIELDED.fetch_sub(1, Ordering::SeqCst);
        SHIELD_DONE.notify_waiters();
        out
    });
    handle
        .await
        .map_err(|e| Error::Other(format!("an installation task failed: {e}")))
}

/// Waits (up to `limit`) until no shielded work is in progress.
pub async fn wait_shielded(limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        loop {
            let notified = SHIELD_DONE.notified();
            if SHIELDED.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    })
    .await;
}

impl Ctx<'_> {
    /// Deploys; `Ok(None)` when the renewal is complete, `Ok(Some(RollingBack))` when a hook
    /// failed, `Ok(Some(Issued))` when the generation is no longer live (install again).
    pub(super) async fn deploy(
        &mut self,
        attempt: Attempt,
        serial: String,
        not_after: i64,
        generation: String,
        previous: Option<String>,
    ) -> Result<Option<Step>, Failure> {
        let live = self.engine.live(self.cert);
        if live.current().as_deref() != Some(generation.as_str()) {
            warn!(cert = %self.cert.name, order_id = self.cert.order_id(), generation = %generation, "the new files are not the live ones (an interrupted rollback, or a change by hand); installing them again");
            return Ok(Some(Step::Issued {
                attempt,
                serial,
                not_after,
                previous,
            }));
        }
        let env = hook_env(self.cert, &serial, not_after);
        if let Err(e) = put_in_use(self.cert, &attempt, &env).await {
            warn!(cert = %self.cert.name, order_id = self.cert.order_id(), error = %e, previous = previous.as_deref().unwrap_or("none"), "deployment failed; restoring the previous files");
            return Ok(Some(Step::RollingBack {
                attempt,
                serial,
                not_after,
                generation,
                previous,
                error: e.to_string(),
            }));
        }
        let mut keep = vec![generation.as_str()];
        keep.extend(previous.as_deref());
        live.prune(&keep);
        for file in [journal::KEY, journal::CSR, journal::BUNDLE] {
            self.store.remove(file);
        }
        let j = &mut *self.j;
        j.failures = 0;
        j.last_error = None;
        j.retry_at = None;
        j.last_success = Some(unix_now());
        j.key_created = Some(attempt.key_created);
        j.ari = None;
        j.early_ari_serial = attempt.early_ari.then(|| serial.clone());
        self.transition(Step::Idle)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        info!(cert = %self.cert.name, order_id = self.cert.order_id(), serial = %serial, not_after = %fmt_time(not_after), reason = %attempt.reason, "renewal complete");
        self.notify_renewed(&serial, not_after).await;
        Ok(None)
    }

    /// RollingBack: restores the previous files, reloads, and returns the failure to record.
    pub(super) async fn roll_back(
        &mut self,
        attempt: Attempt,
        serial: String,
        not_after: i64,
        generation: String,
        previous: Option<String>,
        error: String,
    ) -> Failure {
        let cert = self.cert.clone();
        let live = self.engine.live(&cert);
        let prev = previous.clone();
        let name = cert.name.clone();
        let restored = shielded(async move {
            let owner = install::fs::resolve_owner(cert.owner.as_deref(), cert.group.as_deref())
                .unwrap_or_default();
            let targets: Vec<(crate::config::FileRole, PathBuf)> = cert
                .files
                .all()
                .iter()
                .map(|(r, p)| (*r, p.to_path_buf()))
                .collect();
            let t: Vec<(crate::config::FileRole, &std::path::Path)> =
                targets.iter().map(|(r, p)| (*r, p.as_path())).collect();
            if let Err(re) = live.restore(prev.as_deref(), &t, owner) {
                error!(cert = %name, error = %re, "cannot restore the previous files");
            }
            if let Some(reload) = &cert.reload {
                let env = hook_env(&cert, "", 0);
                if let Err(re) = hooks::run(reload.as_slice(), &env, cert.hook_timeout).await {
                    error!(cert = %name, error = %re, "reload after restoring the previous files failed");
                }
            }
        })
        .await;
        if let Err(e) = restored {
            error!(cert = %self.cert.name, error = %e, "the rollback did not complete");
        }
        info!(cert = %self.cert.name, order_id = self.cert.order_id(), generation = %generation, restored = previous.as_deref().unwrap_or("none"), "rolled back to the previous files");
        Failure::new(
            Error::Hook(error),
            Step::Issued {
                attempt,
                serial,
                not_after,
                previous,
            },
        )
    }
}

/// Runs `deploy_check` and `reload`, then checks `verify_endpoint`.
async fn put_in_use(
    cert: &Certificate,
    attempt: &Attempt,
    env: &[(String, String)],
) -> Result<(), Error> {
    for (what, argv) in [
        ("deploy_check", &cert.deploy_check),
        ("reload", &cert.reload),
    ] {
        let Some(argv) = argv else { continue };
        info!(cert = %cert.name, order_id = cert.order_id(), hook = what, command = %argv, "running hook");
        match hooks::run(argv.as_slice(), env, cert.hook_timeout).await {
            Ok(out) if out.output.trim().is_empty() => {}
            Ok(out) => {
                info!(cert = %cert.name, hook = what, output = %out.output.trim(), "hook output");
            }
            Err(e) => return Err(Error::Hook(format!("{what} failed: {e}"))),
        }
    }
    let Some(endpoint) = &cert.verify_endpoint else {
        return Ok(());
    };
    let installed = crate::safefs::read_to_string(&cert.files.cert, crate::safefs::PEM_LIMIT)
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", cert.files.cert.display())))?;
    let leaf = crate::crypto::CertFacts::from_pem(&installed)?;
    let sni = server_name(attempt);
    info!(cert = %cert.name, order_id = cert.order_id(), %endpoint, %sni, "waiting for the server to present the new certificate");
    let patience = cert.hook_timeout.min(Duration::from_secs(15));
    crate::probe::wait_for_leaf(&endpoint.host, endpoint.port, &sni, &leaf.der, patience)
        .await
        .map_err(|e| Error::Hook(format!("verify_endpoint failed: {e}")))?;
    info!(cert = %cert.name, order_id = cert.order_id(), %endpoint, serial = %leaf.serial, "the server presents the new certificate");
    Ok(())
}

/// The SNI for `verify_endpoint`: the common name, or for a wildcard the first plain name.
fn server_name(attempt: &Attempt) -> String {
    attempt
        .names
        .iter()
        .find(|n| !n.starts_with("*."))
        .cloned()
        .unwrap_or_else(|| attempt.common_name.replacen("*.", "www.", 1))
}

/// The variables `deploy_check` and `reload` see (never a secret).
pub(super) fn hook_env(cert: &Certificate, serial: &str, not_after: i64) -> Vec<(String, String)> {
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
