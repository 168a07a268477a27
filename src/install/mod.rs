//! Installs a certificate's files as one set that switches atomically.
//!
//! Each installed set is a *generation*: a folder `STATE/live/NAME/GEN/` holding `key.pem`,
//! `cert.pem` and the other configured files, created with their final owner and mode. The
//! symlink `STATE/live/NAME/current` names the live generation, and every configured path
//! (`cert_file`, `key_file`, …) is a symlink to `STATE/live/NAME/current/<file>`. Switching
//! sets is one `rename(2)` of `current`: at every instant, and after a crash at any instant,
//! every configured path resolves into the same generation, so key and certificate match.
//! The previous generation stays on disk for rollback.
//!
//! Plain files found at the configured paths (a certificate installed by hand) are first
//! copied into an `adopted` generation and replaced by links with the same content, so that
//! adopting them is atomic too. This module knows nothing of CertCentral or the config file.

pub mod fs;

use std::io;
use std::path::{Path, PathBuf};

pub use fs::Ownership;

use crate::model::FileRole;

/// An installation failure: which file, and what the system said.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Owner and modes of installed files.
#[derive(Debug, Clone, Copy)]
pub struct Perms {
    pub owner: Ownership,
    pub key_mode: u32,
    pub cert_mode: u32,
}

/// The name of the generation made from hand-installed files.
pub const ADOPTED: &str = "adopted";

/// One certificate's generations under `STATE/live/NAME`.
#[derive(Debug, Clone)]
pub struct Live {
    dir: PathBuf,
}

impl Live {
    pub fn new(state_dir: &Path, name: &str) -> Self {
        Self {
            dir: state_dir.join("live").join(name),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn current_link(&self) -> PathBuf {
        self.dir.join("current")
    }

    /// Where a configured path's symlink points.
    pub fn link_target(&self, role: FileRole) -> PathBuf {
        self.current_link().join(role.file_name())
    }

    /// The live generation's name, if any.
    pub fn current(&self) -> Option<String> {
        std::fs::read_link(self.current_link())
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// Writes generation `generation` with `files`, replacing any incomplete earlier attempt.
    /// Refuses to touch the live generation.
    pub fn stage(
        &self,
        generation: &str,
        files: &[(FileRole, Vec<u8>)],
        perms: &Perms,
    ) -> Result<(), Error> {
        let gen_dir = self.dir.join(generation);
        if self.current().as_deref() == Some(generation) {
            return Ok(());
        }
        fs::create_dirs(&self.dir, 0o755).map_err(io_err("create", &self.dir))?;
        if gen_dir.exists() {
            std::fs::remove_dir_all(&gen_dir).map_err(io_err("remove the incomplete", &gen_dir))?;
        }
        let tmp_dir = self.dir.join(format!(".{generation}.tmp"));
        if tmp_dir.exists() {
            std::fs::remove_dir_all(&tmp_dir).map_err(io_err("remove", &tmp_dir))?;
        }
        fs::create_dirs(&tmp_dir, 0o755).map_err(io_err("create", &tmp_dir))?;
        for (role, bytes) in files {
            let path = tmp_dir.join(role.file_name());
            let mode = if role.is_secret() {
                perms.key_mode
            } else {
                perms.cert_mode
            };
            fs::create_new(&path, bytes, mode, perms.owner).map_err(io_err("write", &path))?;
        }
        fs::fsync_dir(&tmp_dir).map_err(io_err("sync", &tmp_dir))?;
        std::fs::rename(&tmp_dir, &gen_dir).map_err(io_err("rename", &gen_dir))?;
        fs::fsync_dir(&self.dir).map_err(io_err("sync", &self.dir))
    }

    /// Makes `generation` live for `targets`; returns the generation that was live before.
    pub fn activate(
        &self,
        generation: &str,
        targets: &[(FileRole, &Path)],
    ) -> Result<Option<String>, Error> {
        let mut previous = self.current();
        let unlinked: Vec<_> = targets
            .iter()
            .filter(|(role, path)| !self.is_our_link(*role, path))
            .collect();
        if !unlinked.is_empty() {
            if previous.is_none() {
                previous = self.adopt(targets)?;
            }
            for (role, path) in unlinked {
                let parent = fs::parent(path);
                let mode = if role.is_secret() { 0o700 } else { 0o755 };
                fs::create_dirs(parent, mode).map_err(io_err("create", parent))?;
                fs::replace_symlink(&self.link_target(*role), path)
                    .map_err(io_err("link", path))?;
            }
        }
        let link = self.current_link();
        fs::replace_symlink(Path::new(generation), &link).map_err(io_err("switch", &link))?;
        Ok(previous)
    }

    /// Rolls back to `previous`, or, when nothing was installed before, removes the links.
    pub fn restore(
        &self,
        previous: Option<&str>,
        targets: &[(FileRole, &Path)],
    ) -> Result<(), Error> {
        match previous {
            Some(p) => self.activate(p, targets).map(drop),
            None => {
                for (role, path) in targets {
                    if self.is_our_link(*role, path) {
                        std::fs::remove_file(path).map_err(io_err("remove", path))?;
                    }
                }
                let link = self.current_link();
                match std::fs::remove_file(&link) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        Err(io_err("remove", &link)(e))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Removes every generation but `keep`.
    pub fn prune(&self, keep: &[&str]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "current" || keep.contains(&name.as_str()) {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir())
                && let Err(err) = std::fs::remove_dir_all(e.path())
            {
                tracing::warn!(path = %e.path().display(), error = %err, "cannot remove an old generation");
            }
        }
    }

    fn is_our_link(&self, role: FileRole, path: &Path) -> bool {
        std::fs::read_link(path).is_ok_and(|t| t == self.link_target(role))
    }

    /// Copies the plain files at `targets` into the `adopted` generation and makes it live.
    /// Returns `None` when there was nothing to adopt.
    fn adopt(&self, targets: &[(FileRole, &Path)]) -> Result<Option<String>, Error> {
        use std::os::unix::fs::MetadataExt;
        let mut files = Vec::new();
        let mut owner = Ownership::default();
        let (mut key_mode, mut cert_mode) = (0o600, 0o644);
        for (role, path) in targets {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let bytes = std::fs::read(path).map_err(io_err("read", path))?;
            if role.is_secret() {
                key_mode = meta.mode() & 0o777;
            } else {
                cert_mode = meta.mode() & 0o777;
            }
            owner = Ownership {
                uid: Some(meta.uid()),
                gid: Some(meta.gid()),
            };
            files.push((*role, bytes));
        }
        if files.is_empty() {
            return Ok(None);
        }
        self.stage(
            ADOPTED,
            &files,
            &Perms {
                owner,
                key_mode,
                cert_mode,
            },
        )?;
        let link = self.current_link();
        fs::replace_symlink(Path::new(ADOPTED), &link).map_err(io_err("switch", &link))?;
        Ok(Some(ADOPTED.to_owned()))
    }
}
