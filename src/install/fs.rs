//! Durable file primitives: create with the final permissions from the first byte, fsync the
//! file and its directory, replace by rename, never write through a symlink.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Who should own a file; `None` keeps the process's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Creates `path` (which must not exist) holding `contents`, owned as asked, with `mode`.
///
/// The file is opened `O_CREAT|O_EXCL|O_NOFOLLOW` with mode 0600, so nobody else can read it
/// at any instant; ownership is set before the mode is widened to `mode`; data is fsynced.
pub fn create_new(path: &Path, contents: &[u8], mode: u32, owner: Ownership) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    let written = (|| {
        if owner.uid.is_some() || owner.gid.is_some() {
            std::os::unix::fs::fchown(&f, owner.uid, owner.gid)?;
        }
        f.write_all(contents)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// Replaces `path` with `contents` atomically: a temporary file beside it, fsync, rename,
/// fsync the directory. Readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_beside(path);
    create_new(&tmp, contents, mode, Ownership::default())?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(parent(path))
}

/// Points the symlink `link` at `target` atomically (a fresh link renamed over the old
/// path, whatever it was), then fsyncs the directory.
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = temp_beside(link);
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(parent(link))
}

/// Creates `dir` and missing parents with exactly `mode`, whatever the umask (existing folders
/// are left as they are).
pub fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(p) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(p, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(path).join(format!(
        ".{name}.certkeeper-tmp-{:08x}",
        rand::random::<u32>()
    ))
}

/// Resolves user and group names to ids.
pub fn resolve_owner(user: Option<&str>, group: Option<&str>) -> Result<Ownership, String> {
    let uid = match user {
        Some(u) => Some(match nix::unistd::User::from_name(u) {
            Ok(Some(u)) => u.uid.as_raw(),
            Ok(None) => return Err(format!("no such user {u:?}")),
            Err(e) => return Err(format!("cannot look up user {u:?}: {e}")),
        }),
        None => None,
    };
    let gid = match group {
        Some(g) => Some(match nix::unistd::Group::from_name(g) {
            Ok(Some(g)) => g.gid.as_raw(),
            Ok(None) => return Err(format!("no such group {g:?}")),
            Err(e) => return Err(format!("cannot look up group {g:?}: {e}")),
        }),
        None => None,
    };
    Ok(Ownership { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn create_new_modes_and_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k.pem");
        create_new(&p, b"secret", 0o640, Ownership::default()).expect("create");
        assert_eq!(fs::metadata(&p).expect("meta").mode() & 0o777, 0o640);
        assert!(create_new(&p, b"again", 0o600, Ownership::default()).is_err());
        assert_eq!(fs::read(&p).expect("read"), b"secret");
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        assert!(create_new(&link, b"x", 0o600, Ownership::default()).is_err());
        write_atomic(&link, b"new", 0o644).expect("atomic");
        assert_eq!(fs::read(&victim).expect("read"), b"keep");
        assert!(
            !fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
    }
}
