//! The per-certificate journal: where a renewal stands, saved durably (temporary file, fsync,
//! rename, fsync of the folder) before the next side effect. Beside it, in
//! `STATE/certs/NAME/`, live the pending key (0600), its CSR and the issued bundle, and a
//! lock file that serialises the daemon and one-shot `renew` runs.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::step::Step;
use crate::install::fs as ifs;

/// What is recorded for one certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
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
}

/// A failure, for `status` and the retry logic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub at: i64,
    pub step: String,
    pub message: String,
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
        self.dir.join("journal.json")
    }

    /// Creates the folder and `STATE/certs` (0700: they hold private keys); `STATE` itself is
    /// 0755 so that services can follow the certificate links into `STATE/live`.
    pub fn ensure(&self) -> Result<(), Error> {
        if let Some(certs) = self.dir.parent() {
            if let Some(state) = certs.parent() {
                ifs::create_dirs(state, 0o755).map_err(err("create", state))?;
            }
            ifs::create_dirs(certs, 0o700).map_err(err("create", certs))?;
        }
        ifs::create_dirs(&self.dir, 0o700).map_err(err("create", &self.dir))
    }

    /// Reads the journal; a certificate never renewed has the default (idle) one.
    pub fn load(&self) -> Result<Journal, Error> {
        let path = self.journal_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error {
                what: "journal is corrupt (fix or remove it)",
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Journal::default()),
            Err(e) => Err(err("read", &path)(e)),
        }
    }

    pub fn save(&self, journal: &Journal) -> Result<(), Error> {
        let path = self.journal_path();
        let bytes = serde_json::to_vec_pretty(journal)
            .map_err(|e| err("encode", &path)(io::Error::other(e)))?;
        ifs::write_atomic(&path, &bytes, 0o600).map_err(err("write", &path))
    }

    /// Takes the per-certificate lock, waiting while another process holds it.
    pub async fn lock(&self) -> Result<Lock, Error> {
        self.ensure()?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err("open", &path))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Lock { _lock: l }),
            Err((file, _)) => {
                tracing::info!(lock = %path.display(), "another certkeeper process is renewing this certificate; waiting for it");
                let locked = tokio::task::spawn_blocking(move || {
                    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                        .map_err(|(_, e)| e)
                })
                .await
                .map_err(|e| err("lock", &path)(io::Error::other(e)))?
                .map_err(|e| err("lock", &path)(io::Error::from(e)))?;
                Ok(Lock { _lock: locked })
            }
        }
    }

    /// Writes a state file (mode 0600) atomically.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(name);
        ifs::write_atomic(&path, contents, 0o600).map_err(err("write", &path))
    }

    pub fn read(&self, name: &str) -> Result<String, Error> {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path).map_err(err("read", &path))
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }
}
