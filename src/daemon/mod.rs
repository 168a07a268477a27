//! `certkeeper run`: the event loop.
//!
//! One `select!` over timers, finished renewals, file events and [`Event`]s (signals). It
//! sleeps until the earliest next action; there is no periodic busy polling. Each certificate
//! has a "next drive" time; when it comes, [`Engine::drive`] runs in a task (at most
//! `concurrency` at once) and its [`Outcome`] sets the next time. A failing certificate never
//! delays the others. Reload is parse → validate → diff → swap: a bad file changes nothing.

mod heap;
mod leftovers;
mod signals;
mod systemd;
mod watch;

use std::collections::{BTreeSet, HashMap, HashSet};
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
const STOP_GRACE: Duration = Duration::from_secs(8);
/// File events are gathered this long before certificates are re-assessed.
const DEBOUNCE: Duration = Duration::from_secs(2);

/// Says, off the event loop, which certificates could not be installed or validated here (a
/// read-only folder under the unit, a missing program). Each renewal asks again before it
/// sends anything to the CA, and fails there.
fn preflight_all(config: &Config) {
    let certs = config.certificates.clone();
    let dns_updates = config.dns_updates.clone();
    tokio::task::spawn_blocking(move || {
        for c in &certs {
            for problem in crate::renewal::preflight::problems(c, &dns_updates) {
                warn!(cert = %c.name, order_id = c.order_id(), %problem, "this certificate cannot be renewed here until this is fixed");
            }
        }
    });
}

/// Runs the daemon until `events` says stop (or closes).
pub async fn run(config_path: &Path, mut events: mpsc::Receiver<Event>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    raise_file_limit();
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
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut changed: HashSet<CertName> = HashSet::new();
    let mut debounce_at: Option<tokio::time::Instant> = None;
    let mut watchdog = systemd::watchdog_interval().map(tokio::time::interval);
    let api_key = d
        .engine
        .certcentral
        .as_ref()
        .map_or("none", |c| c.api_key_source());
    info!(config = %config_path.display(), certificates = d.config.certificates.len(), api_key, "certkeeper started");
    let (current_tx, current_rx) =
        tokio::sync::watch::channel((d.config.clone(), d.engine.clone()));
    leftovers::start(current_rx);
    preflight_all(&d.config);
    systemd::ready(&d.summary());

    loop {
        d.spawn_due(&mut tasks);
        let sleep_for = d.sleep_duration();
        tokio::select! {
            () = tokio::time::sleep(sleep_for) => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let installed = match joined {
                    Ok(done) => {
                        let installed = matches!(done.result, Ok(Outcome::Renewed { .. }));
                        d.finished(done);
                        installed
                    }
                    Err(e) => {
                        error!(error = %e, "a renewal task failed");
                        false
                    }
                };
                // An installation creates missing folders: they become watchable.
                if installed && watch.incomplete {
                    watch = watch::watch(&d.config, file_tx.clone());
                }
                if tasks.is_empty() {
                    heap::release();
                }
                systemd::status(&d.summary());
            }
            Some(name) = file_rx.recv() => {
                changed.insert(name);
                debounce_at.get_or_insert_with(|| tokio::time::Instant::now() + DEBOUNCE);
            }
            () = async { if let Some(at) = debounce_at { tokio::time::sleep_until(at).await } else { std::future::pending().await } } => {
                debounce_at = None;
                let now = unix_now();
                for name in changed.drain() {
                    info!(cert = %name, "files changed on disk; checking the certificate");
                    if let Some(i) = d.index_of(&name) {
                        d.schedule(i, now);
                    }
                }
            }
            _ = async { match watchdog.as_mut() { Some(w) => w.tick().await, None => std::future::pending().await } } => {
                systemd::watchdog();
            }
            event = events.recv() => match event {
                Some(Event::Reload) => {
                    systemd::reloading();
                    d.reload(config_path);
                    preflight_all(&d.config);
                    let _ = config_tx.send(d.config.clone());
                    let _ = current_tx.send((d.config.clone(), d.engine.clone()));
                    watch = watch::watch(&d.config, file_tx.clone());
                    heap::release();
                    systemd::ready(&d.summary());
                }
                Some(Event::CheckNow) => {
                    info!("checking every certificate now");
                    d.schedule_all(unix_now());
                }
                Some(Event::Stop) | None => break,
            },
        }
    }

    info!(in_progress = tasks.len(), "stopping");
    systemd::stopping();
    drop(watch);
    // No new step starts; steps in progress get a few seconds. A task cut short is resumed
    // from its journal at the next start; an installation or a rollback already under way
    // completes (it is shielded from the abort), within the 10 s.
    let stop_started = tokio::time::Instant::now();
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    crate::renewal::wait_shielded(
        Duration::from_secs(10)
            .saturating_sub(stop_started.elapsed())
            .saturating_sub(Duration::from_millis(300)),
    )
    .await;
    info!("stopped");
    Ok(())
}

/// What a certificate task hands back: which certificate (its index in the configuration of
/// that generation, and its name) and how the drive ended.
struct Finished {
    generation: u64,
    index: usize,
    name: CertName,
    result: anyhow::Result<Outcome>,
    /// The emergency net's time for a failing certificate (see [`emergency_retry`]).
    emergency: i64,
}

/// Where a certificate stands in the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Driven next at this time (unix seconds).
    At(i64),
    /// Being driven; `again`: something changed meanwhile, drive it again right after.
    Running { again: bool },
}

/// The scheduler's state. Certificates are referred to by their index in
/// `config.certificates`, and the next times are kept in order, so each event costs
/// O(log n): a fleet of 10,000 certificates is as cheap per event as one of ten.
struct Daemon {
    config: Arc<Config>,
    /// Bumped at each reload: the index a running task holds refers to its generation.
    generation: u64,
    engine: Arc<Engine>,
    /// Each certificate's place in the schedule.
    slots: Vec<Slot>,
    /// `(time, index)` of every `Slot::At`: the first is the next thing to do.
    queue: BTreeSet<(i64, usize)>,
    /// Pending or failing certificates and their last outcome, for STATUS= lines.
    last: HashMap<CertName, Outcome>,
    permits: Arc<Semaphore>,
}

impl Daemon {
    fn new(config: Config, engine: Engine) -> Self {
        let now = unix_now();
        let n = config.certificates.len();
        let permits = Arc::new(Semaphore::new(config.daemon.concurrency));
        Self {
            config: Arc::new(config),
            generation: 0,
            engine: Arc::new(engine),
            slots: vec![Slot::At(now); n],
            queue: (0..n).map(|i| (now, i)).collect(),
            last: HashMap::new(),
            permits,
        }
    }

    fn index_of(&self, name: &CertName) -> Option<usize> {
        self.config
            .certificates
            .iter()
            .position(|c| &c.name == name)
    }

    /// Drives certificate `i` at `at` (a running one: again as soon as it finishes).
    fn schedule(&mut self, i: usize, at: i64) {
        match self.slots.get(i).copied() {
            Some(Slot::At(old)) => {
                self.queue.remove(&(old, i));
                self.queue.insert((at, i));
                self.slots[i] = Slot::At(at);
            }
            Some(Slot::Running { .. }) => self.slots[i] = Slot::Running { again: true },
            None => {}
        }
    }

    fn schedule_all(&mut self, at: i64) {
        for i in 0..self.slots.len() {
            self.schedule(i, at);
        }
    }

    fn spawn_due(&mut self, tasks: &mut JoinSet<Finished>) {
        let now = unix_now();
        while let Some(&(at, index)) = self.queue.first() {
            if at > now {
                return;
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return;
            };
            self.queue.pop_first();
            self.slots[index] = Slot::Running { again: false };
            let (engine, cert) = (self.engine.clone(), self.config.certificates[index].clone());
            let generation = self.generation;
            let poll_max = self.config.daemon.poll_max;
            tasks.spawn(async move {
                let result = engine
                    .drive(&cert, DriveOptions::default())
                    .await
                    .map_err(anyhow::Error::from);
                let emergency = match &result {
                    Ok(Outcome::Failed { .. }) | Err(_) => {
                        let cert = cert.clone();
                        tokio::task::spawn_blocking(move || {
                            emergency_retry(&cert, poll_max, unix_now())
                        })
                        .await
                        .unwrap_or(i64::MAX)
                    }
                    _ => i64::MAX,
                };
                drop(permit);
                Finished {
                    generation,
                    index,
                    name: cert.name,
                    result,
                    emergency,
                }
            });
        }
    }

    fn sleep_duration(&self) -> Duration {
        let now = unix_now();
        let interval = self.config.daemon.check_interval.as_secs() as i64;
        let earliest = self.queue.first().map_or(now + interval, |(t, _)| *t);
        let secs = (earliest - now).clamp(0, interval);
        // Waiting for a permit: look again shortly.
        if secs == 0 && self.permits.available_permits() == 0 {
            return Duration::from_millis(200);
        }
        Duration::from_secs(secs as u64)
    }

    fn finished(&mut self, done: Finished) {
        let Finished {
            generation,
            index,
            name,
            result,
            emergency,
        } = done;
        // A task started before a reload finds its certificate by name (it may be gone).
        let index = if generation == self.generation {
            Some(index)
        } else {
            self.index_of(&name)
        };
        let Some((i, cert)) = index.and_then(|i| Some((i, self.config.certificates.get(i)?)))
        else {
            self.last.remove(&name);
            return;
        };
        let now = unix_now();
        let poll_max = self.config.daemon.poll_max.as_secs() as i64;
        let next = match &result {
            Ok(Outcome::NotDue { next_check }) => *next_check,
            Ok(Outcome::Renewed { serial, not_after }) => {
                info!(cert = %name, order_id = cert.order_id(), serial = %serial, not_after = %fmt_time(*not_after), "certificate renewed");
                now
            }
            Ok(Outcome::Waiting { until, .. }) => *until,
            Ok(Outcome::Failed { retry_at, .. }) => (*retry_at).min(emergency),
            Err(e) => {
                error!(cert = %name, order_id = cert.order_id(), error = %format!("{e:#}"), "renewal error");
                now.saturating_add(poll_max).min(emergency)
            }
        };
        // Only what STATUS= counts is kept: pending and failing certificates.
        match result {
            Ok(o @ (Outcome::Waiting { .. } | Outcome::Failed { .. })) => {
                self.last.insert(name, o);
            }
            _ => {
                self.last.remove(&name);
            }
        }
        let at = match self.slots[i] {
            Slot::Running { again: true } => now,
            _ => next.max(now),
        };
        self.slots[i] = Slot::At(at);
        self.queue.insert((at, i));
    }

    fn reload(&mut self, path: &Path) {
        let config = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "the new configuration is invalid; keeping the old one");
                return;
            }
        };
        if config.daemon.state_dir != self.config.daemon.state_dir {
            error!(
                old = %self.config.daemon.state_dir.display(),
                new = %config.daemon.state_dir.display(),
                "state_dir cannot change while the daemon runs (renewals in progress live there); keeping the old configuration: restart the daemon to move it"
            );
            return;
        }
        let engine = match Engine::from_config(&config) {
            Ok(e) => e,
            Err(e) => {
                error!(error = %e, "the new configuration is invalid; keeping the old one");
                return;
            }
        };
        let now = unix_now();
        let old: HashMap<&CertName, usize> = (self.config.certificates.iter())
            .enumerate()
            .map(|(i, c)| (&c.name, i))
            .collect();
        let (mut added, mut changed) = (0, 0);
        let slots: Vec<Slot> = (config.certificates.iter())
            .map(|c| {
                let Some(&k) = old.get(&c.name) else {
                    added += 1;
                    return Slot::At(now);
                };
                if self.config.certificates[k] == *c {
                    return self.slots[k];
                }
                changed += 1;
                match self.slots[k] {
                    Slot::At(_) => Slot::At(now),
                    Slot::Running { .. } => Slot::Running { again: true },
                }
            })
            .collect();
        let removed = old.len() + added - slots.len();
        drop(old);
        self.queue = (slots.iter().enumerate())
            .filter_map(|(i, s)| match s {
                Slot::At(t) => Some((*t, i)),
                Slot::Running { .. } => None,
            })
            .collect();
        self.slots = slots;
        self.generation += 1;
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
        let next = self.queue.first().map(|(t, _)| {
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

/// The emergency net: a certificate with under a twentieth of its life left is retried at
/// least every `poll_max`, whatever the backoff says. Reads only the installed certificate
/// (bounded, never blocking on a FIFO); run off the event loop.
fn emergency_retry(cert: &Certificate, poll_max: Duration, now: i64) -> i64 {
    let facts = crate::safefs::read_to_string(&cert.files.cert, crate::safefs::PEM_LIMIT)
        .ok()
        .and_then(|pem| crate::crypto::CertFacts::from_pem(&pem).ok());
    match facts {
        Some(f) if f.not_after - now < f.lifetime_secs() / 20 => {
            now.saturating_add(i64::try_from(poll_max.as_secs()).unwrap_or(i64::MAX))
        }
        _ => i64::MAX,
    }
}

/// Raises the soft limit on open files to the hard limit: hooks, DNS and HTTPS clients and
/// the metrics endpoint all hold descriptors (the unit also sets `LimitNOFILE=`).
fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon over certificates named `names`; `order` sets every order id (a change).
    fn write(dir: &Path, names: &[&str], order: u64) {
        let mut text = String::from(
            "[certcentral]\napi_key_file = \"api-key\"\n[daemon]\nstate_dir = \"state\"\n",
        );
        for n in names {
            text.push_str(&format!(
                "[[certificate]]\nname = \"{n}\"\norder_id = {order}\ncert_file = \"{n}.pem\"\nkey_file = \"{n}.key\"\n"
            ));
        }
        std::fs::write(dir.join("certkeeper.toml"), text).expect("config");
    }

    fn daemon(dir: &Path, names: &[&str]) -> Daemon {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.join("api-key"), "k\n").expect("key");
        std::fs::set_permissions(dir.join("api-key"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        write(dir, names, 1);
        let config = Config::load(&dir.join("certkeeper.toml")).expect("load");
        let engine = Engine::from_config(&config).expect("engine");
        Daemon::new(config, engine)
    }

    /// The queue holds exactly the `At` slots.
    fn assert_consistent(d: &Daemon) {
        let expected: BTreeSet<(i64, usize)> = (d.slots.iter().enumerate())
            .filter_map(|(i, s)| match s {
                Slot::At(t) => Some((*t, i)),
                Slot::Running { .. } => None,
            })
            .collect();
        assert_eq!(d.queue, expected);
        assert_eq!(d.slots.len(), d.config.certificates.len());
    }

    fn slot(d: &Daemon, name: &str) -> Slot {
        let i = d
            .index_of(&name.parse::<CertName>().expect("name"))
            .expect(name);
        d.slots[i]
    }

    /// What `spawn_due` does to a certificate it starts.
    fn start(d: &mut Daemon, i: usize) {
        if let Slot::At(t) = d.slots[i] {
            d.queue.remove(&(t, i));
        }
        d.slots[i] = Slot::Running { again: false };
    }

    fn not_due(d: &Daemon, generation: u64, name: &str, next_check: i64) -> Finished {
        let name = name.parse::<CertName>().expect("name");
        Finished {
            generation,
            index: d.index_of(&name).expect("index"),
            name,
            result: Ok(Outcome::NotDue { next_check }),
            emergency: i64::MAX,
        }
    }

    #[test]
    fn schedule_keeps_queue_and_slots_in_step() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut d = daemon(dir.path(), &["a", "b", "c"]);
        assert_consistent(&d);
        let later = unix_now() + 3600;
        d.schedule(0, later);
        d.schedule(1, later + 1);
        assert_eq!(d.queue.first().map(|(_, i)| *i), Some(2), "c is first");
        // b is being driven: a file event asks for it again after it finishes.
        start(&mut d, 1);
        d.schedule(1, unix_now());
        assert_eq!(d.slots[1], Slot::Running { again: true });
        assert_consistent(&d);
        let done = not_due(&d, 0, "b", later + 99);
        d.finished(done);
        assert!(matches!(d.slots[1], Slot::At(t) if t <= unix_now()));
        assert_consistent(&d);
        // Not asked again: the outcome's time counts.
        start(&mut d, 2);
        let done = not_due(&d, 0, "c", later + 99);
        d.finished(done);
        assert_eq!(d.slots[2], Slot::At(later + 99));
        assert_consistent(&d);
        d.schedule_all(5);
        assert!(d.slots.iter().all(|s| *s == Slot::At(5)));
        assert_consistent(&d);
    }

    #[test]
    fn reload_keeps_unchanged_times_and_maps_running_tasks_by_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut d = daemon(dir.path(), &["a", "b", "c"]);
        let later = unix_now() + 3600;
        d.schedule(0, later);
        start(&mut d, 1);
        let b_task = not_due(&d, 0, "b", later);

        // b changes (its order), c goes, d comes, and a moves to the end.
        let config = dir.path().join("certkeeper.toml");
        write(dir.path(), &["b", "d"], 2);
        let text = std::fs::read_to_string(&config).expect("read");
        let a = "[[certificate]]\nname = \"a\"\norder_id = 1\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\n";
        std::fs::write(&config, format!("{text}{a}")).expect("write");
        d.reload(&config);

        assert_eq!(d.generation, 1);
        assert_eq!(
            slot(&d, "a"),
            Slot::At(later),
            "unchanged: its time is kept"
        );
        assert_eq!(slot(&d, "b"), Slot::Running { again: true });
        assert!(matches!(slot(&d, "d"), Slot::At(t) if t <= unix_now()));
        assert!(d.index_of(&"c".parse::<CertName>().expect("c")).is_none());
        assert_consistent(&d);

        // b's task, started before the reload with b's old index, lands on the new b.
        d.finished(b_task);
        assert!(matches!(slot(&d, "b"), Slot::At(t) if t <= unix_now()));
        assert_consistent(&d);

        // A bad file changes nothing.
        std::fs::write(&config, "[daemon]\nconcurrency = 0\n").expect("write");
        d.reload(&config);
        assert_eq!(d.generation, 1);
        assert_eq!(slot(&d, "a"), Slot::At(later));
    }
}
