//! The per-certificate journal: where a renewal stands, saved durably (temporary file, fsync,
//! rename, fsync of the folder) before the next side effect. Beside it, in
//! `STATE/certs/NAME/`, live the pending key (0600), its CSR and the issued bundle, and a
//! lock file that serialises the daemon and one-shot `renew` runs.
//!
//! Journals written by earlier releases (no `version`) are migrated when read, so a renewal in
//! progress survives an upgrade.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::step::Step;
use crate::safefs::{self, Dir, Spec, Trust};
use crate::validation::DnsRecord;

/// The journal format written by this release.
pub const VERSION: u32 = 2;

/// How often a held per-certificate lock is tried again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// What is recorded for one certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    #[serde(default)]
    pub version: u32,
    pub step: Step,
    /// The last failure, kept until a renewal succeeds.
    #[serde(default)]
    pub last_error: Option<LastError>,
    /// Consecutive failures (drives the backoff).
    #[serde(default)]
    pub failures: u32,
    /// Every failure ever recorded (for metrics).
    #[serde(default)]
    pub failures_total: u64,
    /// The order's end (`yyyy-MM-dd`) as last read from CertCentral.
    #[serde(default)]
    pub order_valid_till: Option<String>,
    /// Do not retry before this time (unix seconds).
    #[serde(default)]
    pub retry_at: Option<i64>,
    /// When a renewal last completed.
    #[serde(default)]
    pub last_success: Option<i64>,
    /// When the installed key was created.
    #[serde(default)]
    pub key_created: Option<i64>,
    /// Set when renewing cannot succeed until the certificate's configuration changes (the
    /// order ended, a duplicate breaks the order's name rules, a validity past the order's
    /// end); cleared by a config change.
    #[serde(default)]
    pub blocked: Option<String>,
    /// Fingerprint of the certificate's config at the last failure.
    #[serde(default)]
    pub config_fingerprint: Option<String>,
    #[serde(default)]
    pub updated: i64,
    /// What is published for validation right now: recorded *before* it is published, removed
    /// after it is taken down.
    #[serde(default)]
    pub published: Vec<Publication>,
    /// When renewals nobody asked for (a missing or mismatched file) started: at most a few a
    /// day, so a file deleted again and again cannot cost a CertCentral request each time.
    #[serde(default)]
    pub unrequested: Vec<i64>,
    /// The CA's suggested renewal window (ACME ARI, RFC 9773).
    #[serde(default)]
    pub ari: Option<AriWindow>,
    /// The serial of the certificate an early renewal window produced: its own early window
    /// waits for half its life (one early renewal, never a loop).
    #[serde(default)]
    pub early_ari_serial: Option<String>,
    /// The state `on_failure` was last run for (`failed` or `stuck`), so it runs on changes.
    #[serde(default)]
    pub notified: Option<String>,
    /// What that notification was about (the failure's text, digits masked), so that a
    /// different failure is told too.
    #[serde(default)]
    pub notified_about: Option<String>,
}

/// A failure, for `status` and the retry logic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub at: i64,
    pub step: String,
    pub message: String,
    /// What retrying can do (absent in journals written before it was recorded).
    #[serde(default)]
    pub class: Option<RetryClass>,
}

/// What retrying can do for a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryClass {
    /// It may pass by itself: the network, a 5xx or 429, a timeout, a record not yet visible.
    /// Retried with the backoff, from `poll_interval` up to `poll_max`.
    Transient,
    /// A person must fix the host or the account: a bad key file, a missing program, a
    /// refused permission, a rejected API key. Retried at `poll_max`; `on_failure` runs once.
    NeedsPerson,
    /// Nothing is retried until the certificate's configuration changes.
    NeedsConfigChange,
}

impl RetryClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::NeedsPerson => "needs_person",
            Self::NeedsConfigChange => "needs_config_change",
        }
    }
}

/// An ACME CA's renewal window for the installed certificate (RFC 9773), and the point in it
/// certkeeper chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriWindow {
    /// The serial of the certificate the window is for.
    pub serial: String,
    pub start: i64,
    pub end: i64,
    /// A random point in the window, chosen once per window.
    pub chosen: i64,
    /// When to ask the CA again (its `Retry-After`).
    pub next_fetch: i64,
    #[serde(default)]
    pub explanation: Option<String>,
}

/// One record or file published for validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The name being validated (`*.example.com` is validated at `example.com`).
    pub domain: String,
    pub what: Published,
    pub state: PubState,
    /// Why the last attempt to take it down failed (it is tried again).
    #[serde(default)]
    pub cleanup_error: Option<String>,
}

/// Whether the publication is done: `Publishing` is recorded before the side effect, so on
/// resume it is published again (idempotent) before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PubState {
    Publishing,
    Published,
}

/// What was published, and everything needed to take it down even if the configuration has
/// changed since (never a secret: the TSIG key is read from its file again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Published {
    /// A file under a web root.
    File {
        root: PathBuf,
        path: String,
        content: String,
        /// Folders that did not exist before (removed again when empty).
        #[serde(default)]
        created_dirs: Vec<String>,
    },
    /// A DNS record published by the `dns_publish` command.
    Hook {
        record: DnsRecord,
        publish: Vec<String>,
        cleanup: Option<Vec<String>>,
        /// `CERTKEEPER_DCV_METHOD` for the commands.
        method: String,
        timeout_secs: u64,
    },
    /// A DNS record added by RFC 2136.
    Update {
        record: DnsRecord,
        server: String,
        port: u16,
        key_file: PathBuf,
        zone: Option<String>,
    },
}

impl Published {
    /// Whether two publications put the same thing in the same place.
    pub fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::File {
                    root,
                    path,
                    content,
                    ..
                },
                Self::File {
                    root: r2,
                    path: p2,
                    content: c2,
                    ..
                },
            ) => root == r2 && path == p2 && content == c2,
            (
                Self::Hook {
                    record: a,
                    publish: pa,
                    ..
                },
                Self::Hook {
                    record: b,
                    publish: pb,
                    ..
                },
            ) => a == b && pa == pb,
            (
                Self::Update {
                    record: a,
                    server: sa,
                    port: pa,
                    zone: za,
                    ..
                },
                Self::Update {
                    record: b,
                    server: sb,
                    port: pb,
                    zone: zb,
                    ..
                },
            ) => a == b && sa == sb && pa == pb && za == zb,
            _ => false,
        }
    }

    /// Where it is, for logs and `status`.
    pub fn describe(&self) -> String {
        match self {
            Self::File { root, path, .. } => root.join(path).display().to_string(),
            Self::Hook { record, .. } => format!("{record} (dns_publish)"),
            Self::Update {
                record,
                server,
                port,
                ..
            } => format!("{record} (RFC 2136 at {server}:{port})"),
        }
    }

    /// The DNS record, for DNS publications.
    pub fn dns_record(&self) -> Option<&DnsRecord> {
        match self {
            Self::File { .. } => None,
            Self::Hook { record, .. } | Self::Update { record, .. } => Some(record),
        }
    }
}

/// A journal or state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("state {}: {what}: {source}", .path.display())]
pub struct Error {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error {
        what,
        path: path.to_owned(),
        source,
    }
}

/// One certificate's folder in the state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Held while a renewal runs; released on drop.
pub struct Lock {
    _lock: nix::fcntl::Flock<File>,
}

/// Files kept beside the journal while a renewal is under way.
pub const KEY: &str = "key.pem";
pub const CSR: &str = "csr.pem";
pub const BUNDLE: &str = "bundle.pem";
/// A note of a call being retried right now (for `status`), removed at the next step.
pub const RETRYING: &str = "retrying.json";
const JOURNAL: &str = "journal.json";

impl Store {
    pub fn new(state_dir: &Path, name: &str) -> Self {
        Self {
            dir: state_dir.join("certs").join(name),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// Creates the folder and `STATE/certs` (0700: they hold private keys); `STATE` itself is
    /// 0755 so that services can follow the certificate links into `STATE/live`.
    pub fn ensure(&self) -> Result<Dir, Error> {
        let trust = Trust::default();
        if let Some(certs) = self.dir.parent() {
            if let Some(state) = certs.parent() {
                Dir::create_all(state, &Spec::mode(0o755), &trust).map_err(err("create", state))?;
            }
            Dir::create_all(certs, &Spec::mode(0o700), &trust).map_err(err("create", certs))?;
        }
        Dir::create_all(&self.dir, &Spec::mode(0o700), &trust).map_err(err("create", &self.dir))
    }

    /// Reads the journal; a certificate never renewed has the default (idle) one.
    pub fn load(&self) -> Result<Journal, Error> {
        let path = self.journal_path();
        match safefs::read(&path, safefs::STATE_LIMIT) {
            Ok(bytes) => parse(&bytes).map_err(|e| Error {
                what: "journal is corrupt (fix or remove it)",
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Journal::default()),
            Err(e) => Err(err("read", &path)(e)),
        }
    }

    /// Whether a journal exists (the certificate was ever renewed or is being renewed).
    pub fn exists(&self) -> bool {
        self.journal_path().exists()
    }

    pub fn save(&self, journal: &Journal) -> Result<(), Error> {
        let path = self.journal_path();
        let mut journal = journal.clone();
        journal.version = VERSION;
        let bytes = serde_json::to_vec_pretty(&journal)
            .map_err(|e| err("encode", &path)(io::Error::other(e)))?;
        // A journal `load` would refuse is never written: the last one stays.
        if u64::try_from(bytes.len()).map_or(true, |n| n > safefs::STATE_LIMIT) {
            return Err(err("write", &path)(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the journal would be {} bytes, more than the {} it may have; the last one is kept",
                    bytes.len(),
                    safefs::STATE_LIMIT
                ),
            )));
        }
        self.ensure()?
            .write_atomic(JOURNAL, &bytes, &Spec::mode(0o600))
            .map_err(err("write", &path))
    }

    /// Takes the per-certificate lock, waiting while another process holds it.
    pub async fn lock(&self) -> Result<Lock, Error> {
        self.ensure()?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(err("open", &path))?;
        let mut file = file;
        let mut told = false;
        // Polled rather than waited for on a thread: the daemon's blocking pool is small, and a
        // `renew` run holding many locks must not occupy it.
        loop {
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => return Ok(Lock { _lock: l }),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                    if !told {
                        tracing::info!(lock = %path.display(), "another certkeeper process is renewing this certificate; waiting for it");
                        told = true;
                    }
                    file = f;
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err((_, e)) => return Err(err("lock", &path)(io::Error::from(e))),
            }
        }
    }

    /// Writes a state file (mode 0600) atomically.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(name);
        self.ensure()?
            .write_atomic(name, contents, &Spec::mode(0o600))
            .map_err(err("write", &path))
    }

    pub fn read(&self, name: &str) -> Result<String, Error> {
        let path = self.dir.join(name);
        let dir = Dir::open(&self.dir, &Trust::default()).map_err(err("read", &path))?;
        let (bytes, _) = dir
            .read_file(name, safefs::STATE_LIMIT)
            .map_err(err("read", &path))?;
        String::from_utf8(bytes)
            .map_err(|e| err("read", &path)(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    pub fn remove(&self, name: &str) {
        if let Ok(dir) = Dir::open(&self.dir, &Trust::default()) {
            let _ = dir.remove_file(name);
        }
    }
}

/// Reads a journal of this release or of an earlier one.
fn parse(bytes: &[u8]) -> Result<Journal, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    if value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
        < 2
    {
        migrate_v1(&mut value);
    }
    serde_json::from_value(value)
}

/// Journals of the first release: the attempt held the order (with the names) as `order`,
/// and a pending step had `request_id`/`certificate_id` of its own.
fn migrate_v1(journal: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let Some(step) = journal.get_mut("step").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(attempt) = step.get_mut("attempt").and_then(Value::as_object_mut)
        && let Some(Value::Object(mut order)) = attempt.remove("order")
    {
        attempt.insert(
            "common_name".into(),
            order.remove("common_name").unwrap_or(Value::Null),
        );
        attempt.insert("names".into(), order.remove("names").unwrap_or(json!([])));
        order.insert("issuer".into(), json!("cert_central"));
        attempt.insert("target".into(), Value::Object(order));
    }
    if step.get("step").and_then(Value::as_str) == Some("pending") {
        let request_id = step.remove("request_id").unwrap_or(Value::Null);
        let certificate_id = step.remove("certificate_id").unwrap_or(Value::Null);
        step.insert(
            "request".into(),
            json!({ "issuer": "cert_central", "request_id": request_id, "certificate_id": certificate_id }),
        );
    }
}

impl Journal {
    /// Caps stored instants at `now + max_wait`: after the clock was set back, a pending poll
    /// or a retry never waits longer than it could have when it was recorded.
    pub fn clamp_times(&mut self, now: i64, max_wait: i64, propagation: i64) {
        let cap = now.saturating_add(max_wait);
        if let Some(at) = self.retry_at.as_mut()
            && *at != i64::MAX
        {
            *at = (*at).min(cap);
        }
        match &mut self.step {
            Step::Pending { next_poll, .. } => *next_poll = (*next_poll).min(cap),
            Step::Validating { validation, .. } => {
                validation.next_check = validation.next_check.min(cap);
                if let Some(deadline) = validation.propagation_deadline.as_mut() {
                    *deadline = (*deadline).min(now.saturating_add(propagation));
                }
            }
            _ => {}
        }
        if let Some(ari) = self.ari.as_mut() {
            ari.next_fetch = ari
                .next_fetch
                .min(now.saturating_add(super::secs(crate::scheduler::ARI_REFRESH_MAX)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal larger than `load` reads is refused, and the last one stays readable.
    #[test]
    fn a_journal_too_large_to_read_is_not_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path(), "www");
        let mut j = Journal {
            failures: 1,
            ..Journal::default()
        };
        store.save(&j).expect("saved");
        j.unrequested = vec![i64::MAX; 200_000];
        let e = store.save(&j).expect_err("refused");
        assert!(e.to_string().contains("more than the 1048576"), "{e}");
        assert_eq!(store.load().expect("the last one").failures, 1);
    }

    /// A journal of the first release, pending at CertCentral, reads as this release's.
    #[test]
    fn first_release_journals_migrate() {
        let v1 = r#"{
  "step": { "step": "pending",
    "attempt": { "reason": "forced", "started": 1, "key_created": 1,
      "order": { "order_id": 1001, "method": "reissue", "certificate_id": 7, "serial": "AB",
        "common_name": "example.test", "names": ["example.test", "www.example.test"],
        "server_platform": 45, "signature_hash": "sha256", "order_valid_till": "2027-01-01" } },
    "request_id": 42, "certificate_id": null, "since": 1, "polls": 2, "next_poll": 3 },
  "failures": 0, "updated": 3 }"#;
        let j = parse(v1.as_bytes()).expect("migrates");
        let Step::Pending {
            attempt, request, ..
        } = &j.step
        else {
            panic!("{:?}", j.step)
        };
        assert_eq!(attempt.names, ["example.test", "www.example.test"]);
        assert_eq!(attempt.target.order().map(|o| o.order_id), Some(1001));
        assert_eq!(request.request_id(), Some(42));
    }

    /// After the clock was set back a day, a stored poll time, retry time and ARI fetch time
    /// wait no longer than they could have when stored; "never retry" stays never.
    #[test]
    fn instants_from_before_a_clock_change_are_capped() {
        let pending = r#"{ "version": 1, "step": { "step": "pending",
    "attempt": { "reason": "forced", "started": 1, "key_created": 1,
      "order": { "order_id": 1001, "method": "reissue", "certificate_id": 7, "serial": "AB",
        "common_name": "example.test", "names": ["example.test"], "server_platform": 45,
        "signature_hash": "sha256", "order_valid_till": "2027-01-01" } },
    "request_id": 42, "certificate_id": null, "since": 1, "polls": 2, "next_poll": 186400 },
  "failures": 1, "retry_at": 186400, "updated": 3 }"#;
        let now = 100_000; // the clock went back a day after the times were stored
        let mut j = parse(pending.as_bytes()).expect("parses");
        j.clamp_times(now, 3600, 600);
        let Step::Pending { next_poll, .. } = j.step else {
            panic!("{:?}", j.step)
        };
        assert_eq!((next_poll, j.retry_at), (now + 3600, Some(now + 3600)));

        // Times already within the cap are left alone, and i64::MAX means "never".
        let mut j = parse(pending.as_bytes()).expect("parses");
        j.retry_at = Some(i64::MAX);
        j.clamp_times(186_000, 3600, 600);
        let Step::Pending { next_poll, .. } = j.step else {
            panic!("{:?}", j.step)
        };
        assert_eq!((next_poll, j.retry_at), (186_400, Some(i64::MAX)));
        // A DNS wait's deadline from before the clock went back lasts at most the timeout.
        let mut v = parse(pending.as_bytes()).expect("parses");
        let Step::Pending {
            attempt, request, ..
        } = v.step.clone()
        else {
            panic!("{:?}", v.step)
        };
        v.step = Step::Validating {
            attempt,
            request,
            validation: super::super::step::Validation {
                since: 1,
                checks: 0,
                next_check: 186_400,
                propagation_deadline: Some(186_400),
                ..Default::default()
            },
        };
        v.clamp_times(now, 3600, 600);
        let Step::Validating { validation, .. } = &v.step else {
            panic!("{:?}", v.step)
        };
        assert_eq!(validation.propagation_deadline, Some(now + 600));
        // Far in the past or future, nothing overflows.
        j.clamp_times(i64::MAX, i64::MAX, i64::MAX);
        j.clamp_times(i64::MIN, 3600, 600);
    }
}
