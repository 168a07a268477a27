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
//! adopting them is atomic too. Each adopted file keeps its own owner and group, and its mode
//! is never widened (a key loses any access by others). A symlink at a configured path that
//! points outside the state directory is never followed: adopting would copy whatever it
//! points at.
//!
//! Every folder is reached and created through descriptors ([`crate::safefs`]). This module
//! knows nothing of CertCentral or the config file.

pub mod fs;

use std::io;
use std::path::{Path, PathBuf};

pub use fs::Ownership;

use crate::model::FileRole;
use crate::safefs::{self, Dir, Spec, Trust};

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
    /// A file or folder certkeeper will not touch, and why.
    #[error("{0}")]
    Refused(String),
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

impl Perms {
    /// The owner and mode of a file with this role.
    pub fn spec(&self, role: FileRole) -> Spec {
        self.owner.spec(if role.is_secret() {
            self.key_mode
        } else {
            self.cert_mode
        })
    }
}

/// One file of a generation: its role, its bytes, and who owns it with which mode.
pub type StagedFile = (FileRole, Vec<u8>, Spec);

/// The name of the generation made from hand-installed files.
pub const ADOPTED: &str = "adopted";
const CURRENT: &str = "current";

/// One certificate's generations under `STATE/live/NAME`.
#[derive(Debug, Clone)]
pub struct Live {
    state_dir: PathBuf,
    dir: PathBuf,
}

impl Live {
    pub fn new(state_dir: &Path, name: &str) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
            dir: state_dir.join("live").join(name),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn current_link(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    /// Where a configured path's symlink points.
    pub fn link_target(&self, role: FileRole) -> PathBuf {
        self.current_link().join(role.file_name())
    }

    /// `STATE/live/NAME`, created (0755: services follow the links through it) if needed.
    fn open_dir(&self) -> Result<Dir, Error> {
        let spec = Spec::mode(0o755);
        Dir::create_all(&self.dir, &spec, &Trust::default()).map_err(io_err("create", &self.dir))
    }

    /// The live generation's name, if any.
    pub fn current(&self) -> Option<String> {
        let dir = Dir::open(&self.dir, &Trust::default()).ok()?;
        dir.read_link(CURRENT)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// The live generation's file for `role` (never through a symlink inside the generation),
    /// for checks that the live set is intact.
    pub fn read_current(&self, role: FileRole) -> io::Result<Vec<u8>> {
        let dir = Dir::open(&self.dir, &Trust::default())?;
        let generation = dir.read_link(CURRENT)?;
        let generation = dir.child(&generation)?;
        generation
            .read_file(role.file_name(), safefs::PEM_LIMIT)
            .map(|(bytes, _)| bytes)
    }

    /// When the live generation's file for `role` was last written (unix seconds).
    pub fn current_mtime(&self, role: FileRole) -> Option<i64> {
        let dir = Dir::open(&self.dir, &Trust::default()).ok()?;
        let generation = dir.child(dir.read_link(CURRENT).ok()?).ok()?;
        generation.stat(role.file_name()).ok().map(|st| st.st_mtime)
    }

    /// Writes generation `generation` with `files`, replacing any incomplete earlier attempt.
    /// The live generation is never touched.
    pub fn stage(&self, generation: &str, files: &[StagedFile]) -> Result<(), Error> {
        check_generation_name(generation)?;
        if self.current().as_deref() == Some(generation) {
            return Ok(());
        }
        let live = self.open_dir()?;
        let gen_path = self.dir.join(generation);
        live.remove_tree(generation)
            .map_err(io_err("remove the incomplete", &gen_path))?;
        let tmp = format!(".{generation}.tmp");
        let tmp_path = self.dir.join(&tmp);
        live.remove_tree(&tmp)
            .map_err(io_err("remove", &tmp_path))?;
        let (staging, _) = live
            .child_or_create(&tmp, &Spec::mode(0o755))
            .map_err(io_err("create", &tmp_path))?;
        for (role, bytes, spec) in files {
            let path = tmp_path.join(role.file_name());
            staging
                .create_file(role.file_name(), bytes, spec)
                .map_err(io_err("write", &path))?;
        }
        staging.sync().map_err(io_err("sync", &tmp_path))?;
        live.rename(&tmp, generation)
            .map_err(io_err("rename", &gen_path))
    }

    /// Makes `generation` live for `targets`; returns the generation that was live before.
    /// `owner` owns the folders created for the targets.
    pub fn activate(
        &self,
        generation: &str,
        targets: &[(FileRole, &Path)],
        owner: Ownership,
    ) -> Result<Option<String>, Error> {
        check_generation_name(generation)?;
        let mut previous = self.current();
        let mut unlinked = Vec::new();
        let trust = owner.trust();
        for (role, path) in targets {
            if !self.is_our_link(*role, path, &trust) {
                unlinked.push((*role, *path));
            }
        }
        if !unlinked.is_empty() {
            if previous.is_none() {
                previous = self.adopt(targets, &trust)?;
            }
            for (role, path) in unlinked {
                let (parent, name) = safefs::split(path).map_err(io_err("install", path))?;
                let dir = Dir::create_all(parent, &owner.folder(role.is_secret()), &owner.trust())
                    .map_err(|e| refused_or_io("create", parent, e))?;
                dir.symlink_atomic(name, &self.link_target(role))
                    .map_err(io_err("link", path))?;
            }
        }
        let live = self.open_dir()?;
        live.symlink_atomic(CURRENT, Path::new(generation))
            .map_err(io_err("switch", &self.current_link()))?;
        Ok(previous)
    }

    /// Points configured paths that lost their link back at the live generation, without a
    /// new certificate. Returns the paths repaired.
    pub fn repair_links(
        &self,
        targets: &[(FileRole, &Path)],
        owner: Ownership,
    ) -> Result<Vec<PathBuf>, Error> {
        let mut repaired = Vec::new();
        for (role, path) in targets {
            if self.is_our_link(*role, path, &owner.trust()) {
                continue;
            }
            let (parent, name) = safefs::split(path).map_err(io_err("install", path))?;
            let dir = Dir::create_all(parent, &owner.folder(role.is_secret()), &owner.trust())
                .map_err(|e| refused_or_io("create", parent, e))?;
            dir.symlink_atomic(name, &self.link_target(*role))
                .map_err(io_err("link", path))?;
            repaired.push(path.to_path_buf());
        }
        Ok(repaired)
    }

    /// Rolls back to `previous`, or, when nothing was installed before, removes the links.
    pub fn restore(
        &self,
        previous: Option<&str>,
        targets: &[(FileRole, &Path)],
        owner: Ownership,
    ) -> Result<(), Error> {
        match previous {
            Some(p) => self.activate(p, targets, owner).map(drop),
            None => {
                for (role, path) in targets {
                    if self.is_our_link(*role, path, &owner.trust()) {
                        let (parent, name) = safefs::split(path).map_err(io_err("remove", path))?;
                        let dir = Dir::open(parent, &owner.trust())
                            .map_err(|e| refused_or_io("open", parent, e))?;
                        dir.remove_file(name).map_err(io_err("remove", path))?;
                    }
                }
                match Dir::open(&self.dir, &Trust::default()) {
                    Ok(live) => live
                        .remove_file(CURRENT)
                        .map_err(io_err("remove", &self.current_link())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io_err("open", &self.dir)(e)),
                }
            }
        }
    }

    /// Removes every generation but `keep`.
    pub fn prune(&self, keep: &[&str]) {
        let Ok(live) = Dir::open(&self.dir, &Trust::default()) else {
            return;
        };
        let Ok(entries) = live.entries() else { return };
        for name in entries {
            let text = name.to_string_lossy();
            if text == CURRENT || keep.contains(&text.as_ref()) || !live.is_dir(&name) {
                continue;
            }
            if let Err(err) = live.remove_tree(&name) {
                tracing::warn!(path = %self.dir.join(&name).display(), error = %err, "cannot remove an old generation");
            }
        }
    }

    /// Whether the configured `path` is our symlink for `role`, its folder reached trusting
    /// `trust` (the configured owner's) as installing does.
    pub fn is_our_link(&self, role: FileRole, path: &Path, trust: &Trust) -> bool {
        let Ok((parent, name)) = safefs::split(path) else {
            return false;
        };
        Dir::open(parent, trust)
            .and_then(|d| d.read_link(name))
            .is_ok_and(|t| t == self.link_target(role))
    }

    /// Copies the files at `targets` into the `adopted` generation and makes it live; returns
    /// `None` when there was nothing to adopt. Each file keeps its owner and group; its mode is
    /// never widened (a key file keeps at most owner read-write and group read).
    fn adopt(&self, targets: &[(FileRole, &Path)], trust: &Trust) -> Result<Option<String>, Error> {
        let mut files = Vec::new();
        for (role, path) in targets {
            if let Some((bytes, st)) = self.existing(path, trust)? {
                let mode = st.st_mode & 0o777;
                let mode = if role.is_secret() {
                    mode & 0o640
                } else {
                    mode & 0o644
                };
                let spec = Spec {
                    uid: Some(st.st_uid),
                    gid: Some(st.st_gid),
                    mode,
                };
                files.push((*role, bytes, spec));
            }
        }
        if files.is_empty() {
            return Ok(None);
        }
        self.stage(ADOPTED, &files)?;
        let live = self.open_dir()?;
        live.symlink_atomic(CURRENT, Path::new(ADOPTED))
            .map_err(io_err("switch", &self.current_link()))?;
        Ok(Some(ADOPTED.to_owned()))
    }

    /// The content and status of what is at a configured path, for adoption: a regular file,
    /// or a link into this state directory. Anything else is refused.
    fn existing(
        &self,
        path: &Path,
        trust: &Trust,
    ) -> Result<Option<(Vec<u8>, rustix::fs::Stat)>, Error> {
        let (parent, name) = safefs::split(path).map_err(io_err("read", path))?;
        let dir = match Dir::open(parent, trust) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(refused_or_io("open", parent, e)),
        };
        if !dir.exists(name) {
            return Ok(None);
        }
        if dir.is_link(name) {
            let target = dir.read_link(name).map_err(io_err("read", path))?;
            let inside = target.is_absolute() && target.starts_with(&self.state_dir);
            if !inside {
                return Err(Error::Refused(format!(
                    "{} is a symlink to {}, outside certkeeper's state directory: certkeeper does not follow it to adopt what it points at; replace the link with the file itself, or remove it",
                    path.display(),
                    target.display()
                )));
            }
            // A link into our own state (a renamed certificate's generation): read it there.
            let (tparent, tname) = safefs::split(&target).map_err(io_err("read", &target))?;
            let resolved = std::fs::canonicalize(tparent).map_err(io_err("read", &target))?;
            if !resolved.starts_with(&self.state_dir) {
                return Err(Error::Refused(format!(
                    "{} leads out of certkeeper's state directory; refusing to adopt it",
                    path.display()
                )));
            }
            let tdir =
                Dir::open(&resolved, &Trust::default()).map_err(io_err("open", &resolved))?;
            return match tdir.read_file(tname, safefs::PEM_LIMIT) {
                Ok(found) => Ok(Some(found)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(refused_or_io("read", &target, e)),
            };
        }
        dir.read_file(name, safefs::PEM_LIMIT)
            .map(Some)
            .map_err(|e| refused_or_io("read", path, e))
    }
}

/// A refusal from [`safefs`] (a symlink, a FIFO, an unsafe folder) is said as it is.
fn refused_or_io(what: &'static str, path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::InvalidInput {
        Error::Refused(e.to_string())
    } else {
        io_err(what, path)(e)
    }
}

/// Generation names are serial numbers or `adopted`: one plain file name.
fn check_generation_name(generation: &str) -> Result<(), Error> {
    let ok = !generation.is_empty()
        && generation != CURRENT
        && !generation.starts_with('.')
        && generation
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "invalid generation name {generation:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn files(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("etc/cert.pem"), dir.join("etc/key.pem"))
    }

    /// Adoption keeps each file's own owner and never widens a key's mode; a symlink at a
    /// configured path that leads outside the state directory is refused, not followed.
    #[test]
    fn adoption_is_per_file_and_never_follows_links_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let (cert, key) = files(dir.path());
        std::fs::create_dir_all(cert.parent().expect("parent")).expect("mkdir");
        std::fs::write(&cert, "CERT").expect("cert");
        std::fs::write(&key, "KEY").expect("key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        nix::unistd::chown(&cert, Some(nix::unistd::Uid::from_raw(65534)), None).ok();
        let cert_uid = std::fs::metadata(&cert).expect("meta").uid();
        let live = Live::new(&state, "www");
        let targets = [
            (FileRole::Key, key.as_path()),
            (FileRole::Cert, cert.as_path()),
        ];
        let files = [
            (FileRole::Key, b"NEWKEY".to_vec(), Spec::mode(0o600)),
            (FileRole::Cert, b"NEWCERT".to_vec(), Spec::mode(0o644)),
        ];
        live.stage("AA01", &files).expect("stage");
        let prev = live
            .activate("AA01", &targets, Ownership::default())
            .expect("activate");
        assert_eq!(prev.as_deref(), Some(ADOPTED));
        let adopted_key = state.join("live/www/adopted/key.pem");
        assert_eq!(std::fs::read(&adopted_key).expect("read"), b"KEY");
        assert_eq!(
            std::fs::metadata(&adopted_key).expect("meta").mode() & 0o777,
            0o640,
            "a key is never adopted readable by others"
        );
        let adopted_cert =
            std::fs::metadata(state.join("live/www/adopted/cert.pem")).expect("meta");
        assert_eq!(adopted_cert.uid(), cert_uid, "owner taken per file");
        assert_eq!(
            std::fs::metadata(&adopted_key).expect("meta").uid(),
            rustix::process::geteuid().as_raw(),
            "the key keeps its own owner, not the certificate's"
        );

        // A second certificate whose key_file is a planted link to a root-only file.
        let secret = dir.path().join("shadow");
        std::fs::write(&secret, "ROOT ONLY").expect("secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let key2 = dir.path().join("etc/key2.pem");
        std::os::unix::fs::symlink(&secret, &key2).expect("plant");
        let live2 = Live::new(&state, "api");
        live2.stage("BB02", &files).expect("stage");
        let e = live2
            .activate(
                "BB02",
                &[(FileRole::Key, key2.as_path())],
                Ownership::default(),
            )
            .expect_err("refused");
        assert!(
            e.to_string()
                .contains("outside certkeeper's state directory"),
            "{e}"
        );
        assert!(
            !state.join("live/api/adopted").exists(),
            "nothing was copied"
        );
    }

    /// A FIFO at a configured path is refused without blocking.
    #[test]
    fn adoption_refuses_fifos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _) = files(dir.path());
        std::fs::create_dir_all(cert.parent().expect("parent")).expect("mkdir");
        nix::unistd::mkfifo(&cert, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("fifo");
        let live = Live::new(&dir.path().join("state"), "www");
        live.stage(
            "AA01",
            &[(FileRole::Cert, b"C".to_vec(), Spec::mode(0o644))],
        )
        .expect("stage");
        let e = live
            .activate(
                "AA01",
                &[(FileRole::Cert, cert.as_path())],
                Ownership::default(),
            )
            .expect_err("refused");
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    /// A folder created for a key gets the configured group and 0750, so a non-root service
    /// in that group reaches its files.
    #[test]
    fn key_folders_get_the_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("new/key.pem");
        let live = Live::new(&dir.path().join("state"), "www");
        live.stage("AA01", &[(FileRole::Key, b"K".to_vec(), Spec::mode(0o640))])
            .expect("stage");
        let gid = rustix::process::getegid().as_raw();
        let owner = Ownership {
            uid: None,
            gid: Some(gid),
        };
        live.activate("AA01", &[(FileRole::Key, key.as_path())], owner)
            .expect("activate");
        let m = std::fs::metadata(dir.path().join("new")).expect("meta");
        assert_eq!((m.mode() & 0o7777, m.gid()), (0o750, gid));
    }
}
