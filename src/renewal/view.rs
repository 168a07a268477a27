//! The read-only view of a certificate's renewal: the facts on disk, the policy that applies,
//! the scheduler's verdict, and what a waiting step waits for. Shared by the engine's quick look,
//! `status`, `check`, metrics and the daemon's schedule; it never writes and never asks a CA.

use std::path::{Path, PathBuf};

use super::{Journal, LastError, Request, Step, Store, describe_target, journal};
use crate::config::{self, Certificate};
use crate::crypto::{self, CertFacts};
use crate::install::Live;
use crate::model::{CertName, FileRole};
use crate::scheduler::{self, Assessment, CertState, Policy};

/// How hard to check that a key matches its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// Compare the public key written inside the key file (fast; for `status`).
    Embedded,
    /// Load the private key and derive its public key, once per key and process (the daemon
    /// and `check`): a corrupted private half is noticed.
    Derived,
}

/// The facts on disk for one certificate.
pub struct OnDisk {
    /// As the scheduler needs them.
    pub state: CertState,
    /// The installed certificate, when it can be read.
    pub facts: Option<CertFacts>,
    /// When its key was created, and the evidence for it.
    pub key_age: Option<(i64, KeyAgeSource)>,
}

/// Reads the facts on disk for one certificate. Files are read bounded and without blocking
/// on FIFOs ([`crate::safefs`]).
pub fn disk_state(
    cert: &Certificate,
    state_dir: &Path,
    journal: &Journal,
    check: KeyCheck,
) -> OnDisk {
    let missing = |e: &dyn std::fmt::Display| {
        let (path, e) = (cert.files.cert.display().to_string(), e.to_string());
        // Refusals from safefs name the path already.
        let why = if e.starts_with(&path) {
            e
        } else {
            format!("{path}: {e}")
        };
        OnDisk {
            state: CertState::Missing(why),
            facts: None,
            key_age: None,
        }
    };
    let facts = match crate::safefs::read_to_string(&cert.files.cert, crate::safefs::PEM_LIMIT) {
        Ok(text) => match CertFacts::from_pem(&text) {
            Ok(f) => f,
            Err(e) => return missing(&e),
        },
        Err(e) => return missing(&e),
    };
    let key_matches = crate::safefs::read_to_string(&cert.files.key, crate::safefs::PEM_LIMIT)
        .is_ok_and(|k| match check {
            KeyCheck::Embedded => crypto::key_matches(&k, &facts),
            KeyCheck::Derived => crypto::key_matches_verified(&k, &facts),
        });
    let key_age = key_age(cert, state_dir, journal, &facts);
    let state = CertState::Present {
        not_before: facts.not_before,
        not_after: facts.not_after,
        names: facts.dns_names.clone(),
        key_matches,
        key_created: key_age.map(|(t, _)| t),
        last_renewed: journal.last_success,
    };
    OnDisk {
        state,
        facts: Some(facts),
        key_age,
    }
}

/// Where a key's age comes from, for `status` and `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAgeSource {
    /// certkeeper generated the key and recorded when.
    Generated,
    /// The `notBefore` of the certificate the key belongs to (a key certkeeper did not make).
    Certificate,
    /// The modification time of certkeeper's own copy of the key, older than the certificate.
    KeyFile,
}

impl KeyAgeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generated => "time certkeeper generated it",
            Self::Certificate => "certificate's notBefore",
            Self::KeyFile => "key file's mtime",
        }
    }
}

/// When the installed key was created, from the earliest evidence: the journal when certkeeper
/// generated it; otherwise the `notBefore` of the certificate it belongs to, or the key file's
/// mtime when that is older and the file is certkeeper's own (an mtime anyone can set is not
/// evidence). Never in the future.
pub fn key_age(
    cert: &Certificate,
    state_dir: &Path,
    journal: &Journal,
    facts: &CertFacts,
) -> Option<(i64, KeyAgeSource)> {
    if let Some(t) = journal.key_created {
        return Some((t, KeyAgeSource::Generated));
    }
    // Two plain system calls, not a walk by descriptor (this runs for every certificate in
    // `status`): the link is only evidence, and what it must point at is the live key in
    // certkeeper's own state folder, whose time nobody else can set. A link planted to point
    // there gives the real key's time all the same.
    let live = Live::new(state_dir, cert.name.as_str());
    let ours = std::fs::read_link(&cert.files.key)
        .is_ok_and(|target| target == live.link_target(FileRole::Key));
    let mtime = ours
        .then(|| std::fs::metadata(&cert.files.key).ok())
        .flatten()
        .map(|m| std::os::unix::fs::MetadataExt::mtime(&m));
    match mtime {
        Some(m) if m < facts.not_before => Some((m, KeyAgeSource::KeyFile)),
        _ => Some((facts.not_before, KeyAgeSource::Certificate)),
    }
}

/// The scheduler's policy for `cert`.
pub fn policy<'a>(
    cert: &'a Certificate,
    daemon: &config::Daemon,
    journal: &Journal,
    expected: Option<&'a [String]>,
) -> Policy<'a> {
    Policy {
        name: cert.name.as_str(),
        renew_before: cert.renew_before,
        jitter: daemon.jitter,
        rotate_key_after: cert.rotate_key_after,
        expected_names: expected,
        check_interval: daemon.check_interval,
        ari: journal.ari.as_ref().map(|a| scheduler::Ari {
            serial: a.serial.clone(),
            at: a.chosen,
            once_early: journal.early_ari_serial.as_ref() == Some(&a.serial),
        }),
    }
}

/// The scheduler's view of `cert` now.
pub fn assess(
    cert: &Certificate,
    daemon: &config::Daemon,
    journal: &Journal,
    now: i64,
    check: KeyCheck,
) -> (Assessment, OnDisk) {
    let disk = disk_state(cert, &daemon.state_dir, journal, check);
    let expected = cert.expected_names();
    let policy = policy(cert, daemon, journal, expected.as_deref());
    let serial = disk.facts.as_ref().map(|f| f.serial.as_str());
    (scheduler::assess(&disk.state, &policy, serial, now), disk)
}

/// What a reader (`status`, the metrics) sees of a certificate: its journal, or why it could
/// not be read, and the scheduler's assessment.
pub struct Observation {
    pub journal: Journal,
    /// The journal could not be read (`journal` is then the default, idle one).
    pub journal_error: Option<String>,
    pub assessment: Assessment,
    /// The installed certificate, when it can be read.
    pub facts: Option<CertFacts>,
    /// When the installed key was created, and the evidence for it.
    pub key_age: Option<(i64, KeyAgeSource)>,
    /// A call being retried right now, if any (not for idle certificates).
    pub retrying: Option<LastError>,
}

/// Reads `cert`'s journal and files without taking its lock, and assesses it.
pub fn observe(
    cert: &Certificate,
    daemon: &config::Daemon,
    now: i64,
    keys: KeyCheck,
) -> Observation {
    let store = Store::new(&daemon.state_dir, cert.name.as_str());
    let (journal, journal_error) = match store.load() {
        Ok(j) => (j, None),
        Err(e) => (Journal::default(), Some(e.to_string())),
    };
    let retrying = if matches!(journal.step, Step::Idle) {
        None
    } else {
        store
            .read(journal::RETRYING)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    };
    let (assessment, disk) = assess(cert, daemon, &journal, now, keys);
    Observation {
        journal,
        journal_error,
        assessment,
        facts: disk.facts,
        key_age: disk.key_age,
        retrying,
    }
}

/// A certificate no longer in the configuration whose state still holds work: a renewal under
/// way (a new key, a request at the CA) or records published for validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnconfiguredWork {
    pub name: CertName,
    /// What is there: the step, the request, the publications.
    pub what: String,
    state_dir: PathBuf,
}

impl std::fmt::Display for UnconfiguredWork {
    /// What is there and how to carry it over (a renamed certificate leaves its state under the
    /// old name), or how to give it up.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, certs) = (&self.name, self.state_dir.join("certs"));
        write!(
            f,
            "certificate {:?} is no longer configured but its state holds a renewal ({}); if it was renamed, stop certkeeper and rename {} and {} to the new name so the renewal continues under it; `certkeeper abandon {name}` gives it up",
            name.as_str(),
            self.what,
            certs.join(name.as_str()).display(),
            self.state_dir.join("live").join(name.as_str()).display(),
        )
    }
}

/// Every [`UnconfiguredWork`] in the state folder (for `check`, and the daemon's start and
/// reloads), by name.
pub fn unconfigured_work(config: &config::Config) -> Vec<UnconfiguredWork> {
    let state = &config.daemon.state_dir;
    let Ok(entries) = std::fs::read_dir(state.join("certs")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().to_string_lossy().parse::<CertName>() else {
            continue;
        };
        if config.certificate(name.as_str()).is_some()
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let Ok(j) = Store::new(state, name.as_str()).load() else {
            continue;
        };
        if matches!(j.step, Step::Idle) && j.published.is_empty() {
            continue;
        }
        let mut what = format!("step {}", j.step.name());
        if let Some(a) = j.step.attempt() {
            what.push_str(&format!(" at {}", describe_target(&a.target)));
        }
        if let Some(r) = j.step.request().and_then(Request::request_id) {
            what.push_str(&format!(", request {r}"));
        }
        if !j.published.is_empty() {
            let published: Vec<String> = j.published.iter().map(|p| p.what.describe()).collect();
            what.push_str(&format!(
                ", published for validation: {}",
                published.join(", ")
            ));
        }
        out.push(UnconfiguredWork {
            name,
            what,
            state_dir: state.clone(),
        });
    }
    out.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    out
}

/// What a waiting step waits for, for logs and `status`.
pub fn waiting_for(step: &Step) -> String {
    if let Some(id) = step.downloading() {
        return format!("the download of certificate {id}, which CertCentral issued");
    }
    match step {
        Step::Pending { request, .. } => match request {
            Request::CertCentral {
                certificate_id: Some(c),
                ..
            } => format!("CertCentral to issue certificate {c}"),
            Request::CertCentral {
                request_id: Some(r),
                ..
            } => format!("CertCentral to approve and issue request {r}"),
            Request::CertCentral { .. } => "CertCentral to issue the certificate".into(),
            Request::Acme { order_url } => format!("the ACME CA to issue order {order_url}"),
        },
        Step::Validating { validation, .. } => {
            let mut s = String::from("validation");
            if !validation.unvalidated.is_empty() {
                s.push_str(&format!(" of {}", validation.unvalidated.join(", ")));
            }
            if let Some(answer) = &validation.last_answer {
                s.push_str(&format!(" ({answer})"));
            }
            s
        }
        other => format!("step {other}"),
    }
}
