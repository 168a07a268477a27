//! `certkeeper run`: the event loop.
//!
//! One `select!` over timers, finished renewals, file events and [`Event`]s (signals). It
//! sleeps until the earliest next action; there is no periodic busy polling. Each certificate
//! has a "next drive" time; when it comes, [`Engine::drive`] runs in a task (at most
//! `concurrency` at once) and its [`Outcome`] sets the next time. A failing certificate never
//! delays the others. Reload is parse → validate → diff → swap: a bad file changes nothing.

mod heap;
mod signals;
mod systemd;
mod watch;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

pub use signals::{Event, process_signals};

use crate::config::{Certificate, Config};
use crate::model::{CertName, fmt_time, unix_now};
use crate::renewal::{DriveOptions, Engine, Outcome};

/// How long a graceful stop waits for steps in progress (SPEC.md: stop within 10 s).
const STOP_GRACE: Duration = Duration::from_secs(9);
/// File events are gathered this long before certificates are re-assessed.
const DEBOUNCE: Duration = Duration::from_secs(2);

/// Runs the daemon until `events` says stop (or closes).
pub async fn run(config_path: &Path, mut events: mpsc::Receiver<Event>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let engine = Engine::from_config(&config)?;
    let mut d = Daemon::new(config, engine);
    let (config_tx, config_rx) = tokio::sync::watch::channel(d.config.clone());
    if let Some(addr) = d.config.daemon.metrics_listen {
        crate::metrics::start(addr, config_rx)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on metrics_listen {addr}: {e}"))?;
    }
    let (file_tx, mut file_rx) = mpsc::unbounded_channel();
    let mut watch = watch::watch(&d.config, file_tx.clone());
    let mut tasks: JoinSet<(CertName, anyhow::Result<Outcome>)> = JoinSet::new();
    let mut changed: HashSet<CertName> = HashSet::new();
    let mut debounce_at: Option<tokio::time::Instant> = None;
    let mut watchdog = systemd::watchdog_interval().map(tokio::time::interval);
    info!(config = %config_path.display(), certificates = d.config.certificates.len(), "certkeeper started");
    systemd::ready(&d.summary());

    loop {
        d.spawn_due(&mut tasks);
        let sleep_for = d.sleep_duration();
        tokio::select! {
            () = tokio::time::sleep(sleep_for) => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                match joined {
                    Ok((name, result)) => d.finished(&name, result),
                    Err(e) => error!(error = %e, "a renewal task failed"),
                }
                if tasks.is_empty() {
                    heap::release();
                }
                // Folders created by the first install become watchable.
                if watch.incomplete {
                    watch = watch::watch(&d.config, file_tx.clone());
                }
                systemd::status(&d.summary());
            }
            Some(name) = file_rx.recv() => {
                changed.insert(name);
                debounce_at.get_or_insert_with(|| tokio::time::Instant::now() + DEBOUNCE);
            }
            () = async { if let Some(at) = debounce_at { tokio::time::sleep_until(at).await } else { std::future::pending().await } } => {
                debounce_at = None;
                for name in changed.drain() {
                    info!(cert = %name, "files changed on disk; checking the certificate");
                    d.next.insert(name, unix_now());
                }
            }
            _ = async { match watchdog.as_mut() { Some(w) => w.tick().await, None => std::future::pending().await } } => {
                systemd::watchdog();
            }
            event = events.recv() => match event {
                Some(Event::Reload) => {
                    systemd::reloading();
                    d.reload(config_path);
                    let _ = config_tx.send(d.config.clone());
                    watch = watch::watch(&d.config, file_tx.clone());
                    heap::release();
                    systemd::ready(&d.summary());
                }
                Some(Event::CheckNow) => {
                    info!("checking every certificate now");
                    let now = unix_now();
                    for t in d.next.values_mut() {
                        *t = now;
                    }
                }
                Some(Event::Stop) | None => break,
            },
        }
    }

    info!(in_progress = tasks.len(), "stopping");
    systemd::stopping();
    drop(watch);
    // No new step starts; steps in progress get a few seconds. A task cut short is resumed
    // from its journal at the next start; an installation already running on a blocking
    // thread completes regardless.
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    info!("stopped");
    Ok(())
}

struct Daemon {
    config: Arc<Config>,
    engine: Arc<Engine>,
    /// When each certificate is driven next (unix seconds).
    next: HashMap<CertName, i64>,
    /// Certificates being driven now.
    running: HashSet<CertName>,
    /// Pending or failing certificates and their last outcome, for STATUS= lines.
    last: HashMap<CertName, Outcome>,
    permits: Arc<Semaphore>,
}

impl Daemon {
    fn new(config: Config, engine: Engine) -> Self {
        let now = unix_now();
        let next = config
            .certificates
            .iter()
            .map(|c| (c.name.clone(), now))
            .collect();
        let permits = Arc::new(Semaphore::new(config.daemon.concurrency));
        Self {
            config: Arc::new(config),
            engine: Arc::new(engine),
            next,
            running: HashSet::new(),
            last: HashMap::new(),
            permits,
        }
    }

    fn spawn_due(&mut self, tasks: &mut JoinSet<(CertName, anyhow::Result<Outcome>)>) {
        let now = unix_now();
        for cert in &self.config.certificates {
            if self.running.contains(&cert.name)
                || self.next.get(&cert.name).is_some_and(|t| *t > now)
            {
                continue;
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return;
            };
            self.running.insert(cert.name.clone());
            let (engine, cert) = (self.engine.clone(), cert.clone());
            tasks.spawn(async move {
                let result = engine
                    .drive(&cert, DriveOptions::default())
                    .await
                    .map_err(anyhow::Error::from);
                drop(permit);
                (cert.name, result)
            });
        }
    }

    fn sleep_duration(&self) -> Duration {
        let now = unix_now();
        let earliest = self
            .next
            .iter()
            .filter(|(name, _)| !self.running.contains(*name))
            .map(|(_, t)| *t)
            .min()
            .unwrap_or(now + self.config.daemon.check_interval.as_secs() as i64);
        let secs = (earliest - now).clamp(0, self.config.daemon.check_interval.as_secs() as i64);
        // Waiting for a permit: look again shortly.
        if secs == 0 && self.permits.available_permits() == 0 {
            return Duration::from_millis(200);
        }
        Duration::from_secs(secs as u64)
    }

    fn finished(&mut self, name: &CertName, result: anyhow::Result<Outcome>) {
        self.running.remove(name);
        let Some(cert) = self.config.certificates.iter().find(|c| &c.name == name) else {
            return;
        };
        let now = unix_now();
        let poll_max = self.config.daemon.poll_max.as_secs() as i64;
        let next = match &result {
            Ok(Outcome::NotDue { next_check }) => *next_check,
            Ok(Outcome::Renewed { serial, not_after }) => {
                info!(cert = %name, order_id = cert.order_id, serial = %serial, not_after = %fmt_time(*not_after), "certificate renewed");
                now
            }
            Ok(Outcome::Waiting { until, .. }) => *until,
            Ok(Outcome::Failed { retry_at, .. }) => {
                (*retry_at).min(self.emergency_retry(cert, now))
            }
            Err(e) => {
                error!(cert = %name, order_id = cert.order_id, error = %format!("{e:#}"), "renewal error");
                (now + poll_max).min(self.emergency_retry(cert, now))
            }
        };
        // Only what STATUS= counts is kept: pending and failing certificates.
        match result {
            Ok(o @ (Outcome::Waiting { .. } | Outcome::Failed { .. })) => {
                self.last.insert(name.clone(), o);
            }
            _ => {
                self.last.remove(name);
            }
        }
        self.next.insert(name.clone(), next.max(now));
    }

    /// The emergency net: a certificate with under a twentieth of its life left is retried at
    /// least every `poll_max`, whatever the backoff says.
    fn emergency_retry(&self, cert: &Certificate, now: i64) -> i64 {
        // Only the installed certificate's dates matter here.
        let facts = std::fs::read_to_string(&cert.files.cert)
            .ok()
            .and_then(|pem| crate::crypto::CertFacts::from_pem(&pem).ok());
        match facts {
            Some(f) if f.not_after - now < f.lifetime_secs() / 20 => {
                now + self.config.daemon.poll_max.as_secs() as i64
            }
            _ => i64::MAX,
        }
    }

    fn reload(&mut self, path: &Path) {
        let config = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "the new configuration is invalid; keeping the old one");
                return;
            }
        };
        let engine = match Engine::from_config(&config) {
            Ok(e) => e,
            Err(e) => {
                error!(error = %e, "the new configuration is invalid; keeping the old one");
                return;
            }
        };
        let now = unix_now();
        let old: HashMap<&CertName, &Certificate> = self
            .config
            .certificates
            .iter()
            .map(|c| (&c.name, c))
            .collect();
        let (mut added, mut changed) = (0, 0);
        for c in &config.certificates {
            match old.get(&c.name) {
                None => added += 1,
                Some(o) if *o != c => changed += 1,
                Some(_) => continue,
            }
            self.next.insert(c.name.clone(), now);
        }
        let keep: HashSet<&CertName> = config.certificates.iter().map(|c| &c.name).collect();
        let removed = self.next.len() - self.next.keys().filter(|n| keep.contains(n)).count();
        self.next.retain(|n, _| keep.contains(n));
        if config.daemon.concurrency != self.config.daemon.concurrency {
            self.permits = Arc::new(Semaphore::new(config.daemon.concurrency));
        }
        if config.daemon != self.config.daemon {
            warn!("[daemon] settings changed; they apply from the next check of each certificate");
        }
        self.engine = Arc::new(engine);
        self.config = Arc::new(config);
        info!(added, changed, removed, "configuration reloaded");
    }

    /// A one-line summary for systemd's STATUS=.
    fn summary(&self) -> String {
        let pending = self
            .last
            .values()
            .filter(|o| matches!(o, Outcome::Waiting { .. }))
            .count();
        let failed = self
            .last
            .values()
            .filter(|o| matches!(o, Outcome::Failed { .. }))
            .count();
        let next = self.next.values().min().map(|t| {
            let secs = (*t - unix_now()).max(0) as u64;
            humantime::format_duration(Duration::from_secs(secs)).to_string()
        });
        format!(
            "{} certificates, next check in {}, {pending} pending, {failed} failing",
            self.config.certificates.len(),
            next.as_deref().unwrap_or("-")
        )
    }
}
