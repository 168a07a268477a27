//! File operations that matter, done through descriptors so that a hostile file system cannot
//! redirect them, and reads that refuse what is not a small regular file.
//!
//! Two kinds of operations live here, both shared by every layer like [`crate::model`]:
//!
//! - **Bounded reads** ([`read`], [`read_private`]): the file is opened `O_NONBLOCK` (a FIFO
//!   cannot block the opener), checked on the open descriptor to be a regular file (never a
//!   FIFO, a device or a folder), and read up to a size cap: a PEM bundle is a few KiB, so
//!   `/dev/zero` or a runaway file costs nothing.
//! - **Folders by descriptor** ([`Dir`]): every folder is reached component by component with
//!   `openat(O_DIRECTORY|O_NOFOLLOW)`; folders are created with `mkdirat`, then owned and
//!   moded through their own descriptor (`fchown`, `fchmod`), never by path, so swapping a new
//!   folder for a symlink between two calls achieves nothing. Files are created
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` with mode 0600 and widened only after their owner is set.
//!
//! A folder on the way to where keys are written must not be writable by anyone but root, the
//! process itself and the configured owner ([`Trust`]); a symlink on the way is followed only
//! when root (or the process) owns it and the folder holding it is itself trusted.
//!
//! This module imports nothing from the crate.

mod dir;

pub use dir::Dir;

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{CWD, Mode, OFlags, Stat};

/// Certificates, chains, keys and CSRs: a PEM bundle is a few KiB.
pub const PEM_LIMIT: u64 = 256 * 1024;
/// Journals and other state records.
pub const STATE_LIMIT: u64 = 1024 * 1024;
/// The configuration file (10,000 certificates are about 3 MiB).
pub const CONFIG_LIMIT: u64 = 32 * 1024 * 1024;
/// Secrets: API keys, TSIG and EAB keys.
pub const SECRET_LIMIT: u64 = 64 * 1024;

/// How many symlinks a walk follows before giving up (as the kernel's `ELOOP`).
const MAX_LINKS: usize = 16;

fn refused(path: &Path, why: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {why}", path.display()),
    )
}

/// What kind of file a `Stat` describes, in words for error messages.
fn kind(st: &Stat) -> &'static str {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a folder",
        libc::S_IFLNK => "a symlink",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "an unknown kind of file",
    }
}

fn is_reg(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn is_dir(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_link(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// Reads an open regular file up to `limit` bytes; anything else is refused.
fn read_fd(fd: OwnedFd, path: &Path, limit: u64) -> io::Result<(Vec<u8>, Stat)> {
    let st = rustix::fs::fstat(&fd)?;
    if !is_reg(&st) {
        return Err(refused(
            path,
            format!("is {}, not a regular file; refusing to read it", kind(&st)),
        ));
    }
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if size > limit {
        return Err(refused(
            path,
            format!("is {size} bytes, more than the {limit} bytes such a file can need"),
        ));
    }
    let mut file = std::fs::File::from(fd);
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // A file that grows while read is cut at the limit and refused.
    Read::by_ref(&mut file)
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)?;
    if u64::try_from(buf.len()).unwrap_or(u64::MAX) > limit {
        return Err(refused(path, format!("is larger than {limit} bytes")));
    }
    Ok((buf, st))
}

fn open_read(dir: impl AsFd, name: &Path, follow: bool) -> io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// Reads a small regular file (symlinks to it are followed). FIFOs, devices, folders and files
/// over `limit` bytes are refused without blocking.
pub fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let fd = open_read(CWD, path, true)?;
    read_fd(fd, path, limit).map(|(bytes, _)| bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read(path, limit)?)
        .map_err(|_| refused(path, "is not UTF-8 text; refusing to read it"))
}

/// Reads a secret: a regular file that neither group nor others can read (checked on the open
/// descriptor, so the file checked is the file read). The message says how to fix it.
pub fn read_private(path: &Path, what: &str) -> Result<String, String> {
    let cannot = |e: io::Error| format!("cannot read {what} {}: {e}", path.display());
    let fd = open_read(CWD, path, true).map_err(cannot)?;
    let (bytes, st) = read_fd(fd, path, SECRET_LIMIT).map_err(cannot)?;
    let mode = st.st_mode & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{what} {} is readable by group or others (mode {mode:04o}); run: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{what} {} is not UTF-8 text", path.display()))
}

/// Who may write to the folders on the way to a file certkeeper writes: root, the process
/// itself, and the configured owner and group of the files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trust {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Trust {
    fn uid_ok(&self, uid: u32) -> bool {
        uid == 0 || uid == rustix::process::geteuid().as_raw() || Some(uid) == self.uid
    }

    fn gid_ok(&self, gid: u32) -> bool {
        gid == 0 || gid == rustix::process::getegid().as_raw() || Some(gid) == self.gid
    }

    /// Why a folder with this status is not safe to write keys under, if it is not.
    pub fn folder_problem(&self, st: &Stat) -> Option<String> {
        let mode = st.st_mode & 0o7777;
        if !self.uid_ok(st.st_uid) && mode & 0o200 != 0 {
            return Some(format!(
                "is owned and writable by uid {} (not root, certkeeper or the configured owner)",
                st.st_uid
            ));
        }
        if !self.gid_ok(st.st_gid) && mode & 0o020 != 0 {
            return Some(format!(
                "is writable by group gid {} (mode {mode:04o})",
                st.st_gid
            ));
        }
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Some(format!("is writable by everyone (mode {mode:04o})"));
        }
        None
    }
}

/// Owner, group and mode for folders and files created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: u32,
}

impl Spec {
    pub const fn mode(mode: u32) -> Self {
        Self {
            uid: None,
            gid: None,
            mode,
        }
    }
}

/// The folder holding `path` and its file name.
pub fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => Ok((parent, name)),
        (_, Some(name)) => Ok((Path::new("."), name)),
        _ => Err(refused(path, "does not name a file")),
    }
}

/// Why a configured folder (or one of its existing ancestors) is not safe to install keys
/// under, for `check`: a static look by path, the same rule [`Dir::create_all`] applies.
pub fn folder_problem(path: &Path, trust: &Trust) -> Option<String> {
    match Dir::open(path, trust) {
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = path.parent()?;
            if parent == path {
                return None;
            }
            folder_problem(parent, trust)
        }
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn reads_refuse_fifos_devices_and_big_files_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        let e = read(&fifo, PEM_LIMIT).expect_err("a FIFO is refused");
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        let e = read(Path::new("/dev/zero"), PEM_LIMIT).expect_err("a device is refused");
        assert!(e.to_string().contains("character device"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).expect("write");
        assert!(read(&big, 1024).is_err());
        assert_eq!(read(&big, 4096).expect("fits").len(), 2048);
    }

    #[test]
    fn secrets_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, "s3cret\n").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = read_private(&key, "API key file").expect_err("group-readable");
        assert!(e.contains("readable by group or others (mode 0640)"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(
            read_private(&key, "API key file").expect("private"),
            "s3cret\n"
        );
    }

    #[test]
    fn created_folders_get_their_mode_and_owner_through_the_descriptor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c");
        let gid = rustix::process::getegid().as_raw();
        let spec = Spec {
            uid: None,
            gid: Some(gid),
            mode: 0o750,
        };
        Dir::create_all(&deep, &spec, &Trust::default()).expect("create");
        for p in ["a", "a/b", "a/b/c"] {
            let m = std::fs::metadata(dir.path().join(p)).expect("meta");
            assert_eq!(m.mode() & 0o7777, 0o750, "{p}");
            assert_eq!(m.gid(), gid);
        }
    }

    #[test]
    fn symlinks_are_never_followed_where_it_matters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::create_dir(&victim).expect("victim");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let base = Dir::open(dir.path(), &Trust::default()).expect("open");
        std::os::unix::fs::symlink(&victim, dir.path().join("link")).expect("symlink");
        // child() refuses a symlink; a file is never created through one.
        assert!(base.child("link").is_err());
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"keep").expect("write");
        std::os::unix::fs::symlink(&secret, dir.path().join("file-link")).expect("symlink");
        assert!(
            base.create_file("file-link", b"x", &Spec::mode(0o600))
                .is_err()
        );
        assert!(base.read_file("file-link", 100).is_err());
        base.write_atomic("file-link", b"new", &Spec::mode(0o644))
            .expect("replaced");
        assert_eq!(std::fs::read(&secret).expect("read"), b"keep");
        assert_eq!(
            std::fs::metadata(&victim).expect("meta").mode() & 0o777,
            0o700,
            "the link's target keeps its mode"
        );
    }

    #[test]
    fn folders_writable_by_others_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = Dir::create_all(&open.join("certs"), &Spec::mode(0o755), &Trust::default())
            .expect_err("world-writable without sticky bit");
        assert!(e.to_string().contains("writable by everyone"), "{e}");
        assert!(folder_problem(&open.join("x/y"), &Trust::default()).is_some());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("sticky");
        Dir::create_all(&open.join("certs"), &Spec::mode(0o755), &Trust::default())
            .expect("a sticky folder like /tmp is fine");
    }

    #[test]
    fn walks_through_root_owned_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("real")).expect("mkdir");
        std::os::unix::fs::symlink("real", dir.path().join("alias")).expect("symlink");
        let d = Dir::create_all(
            &dir.path().join("alias/sub"),
            &Spec::mode(0o755),
            &Trust::default(),
        )
        .expect("walk");
        assert!(d.path().ends_with("real/sub"), "{}", d.path().display());
        assert!(dir.path().join("real/sub").is_dir());
    }
}
