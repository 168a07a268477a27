//! Folders by descriptor: [`Dir`] reaches every folder component by component with
//! `openat(O_DIRECTORY|O_NOFOLLOW)`, creates folders with `mkdirat` and sets their owner and
//! mode through their own descriptor, and writes files `O_CREAT|O_EXCL|O_NOFOLLOW`, replacing
//! them atomically with `renameat`.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Mode, OFlags, Stat};

use super::{MAX_LINKS, Spec, Trust, is_dir, is_link, open_read, read_fd, refused};

/// An open folder. Operations on names inside it never follow a symlink at that name.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The normal components of an absolute path; `..` and other forms are refused.
fn components(path: &Path) -> io::Result<Vec<&OsStr>> {
    if !path.is_absolute() {
        return Err(refused(path, "is not an absolute path"));
    }
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(refused(path, "contains '..'; write the folder without it"));
            }
        }
    }
    Ok(out)
}

fn absolute(path: &Path) -> io::Result<PathBuf> {
    std::path::absolute(path)
}

impl Dir {
    /// The folder's path as it was reached.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn root() -> io::Result<Self> {
        let fd = rustix::fs::openat(
            CWD,
            "/",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: PathBuf::from("/"),
        })
    }

    /// Opens a configured folder as its path says (symlinks on the way followed, nobody's
    /// write access checked): for a web root, which a web user may own. Names *below* it are
    /// still reached without following symlinks.
    pub fn open_path(path: &Path) -> io::Result<Self> {
        let path = absolute(path)?;
        let fd = rustix::fs::openat(
            CWD,
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(Self { fd, path })
    }

    /// Opens an existing folder, checking every folder on the way with `trust` (a symlink on
    /// the way is followed only when its owner is trusted).
    pub fn open(path: &Path, trust: &Trust) -> io::Result<Self> {
        Self::walk(&absolute(path)?, None, trust)
    }

    /// Opens a folder, creating it and its missing parents with `spec` (through their
    /// descriptors); every folder on the way must pass `trust`.
    pub fn create_all(path: &Path, spec: &Spec, trust: &Trust) -> io::Result<Self> {
        Self::walk(&absolute(path)?, Some(spec), trust)
    }

    fn walk(path: &Path, create: Option<&Spec>, trust: &Trust) -> io::Result<Self> {
        let mut pending: Vec<OsString> = components(path)?
            .into_iter()
            .rev()
            .map(OsStr::to_owned)
            .collect();
        let mut dir = Self::root()?;
        let mut links = 0;
        while let Some(name) = pending.pop() {
            match dir.open_child(&name) {
                Ok(child) => {
                    let st = rustix::fs::fstat(&child.fd)?;
                    if let Some(problem) = trust.folder_problem(&st) {
                        return Err(refused(
                            &child.path,
                            format!("{problem}; refusing to use it for certificates and keys"),
                        ));
                    }
                    dir = child;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let Some(spec) = create else { return Err(e) };
                    let child = dir.make_dir(&name, spec)?;
                    dir = child;
                }
                Err(_) if dir.is_symlink(&name) => {
                    links += 1;
                    let st = dir.stat(&name)?;
                    if links > MAX_LINKS {
                        return Err(refused(path, "has too many levels of symlinks"));
                    }
                    if !trust.uid_ok(st.st_uid) {
                        return Err(refused(
                            &dir.path.join(&name),
                            format!(
                                "is a symlink owned by uid {}; certkeeper follows symlinks on the way to its files only when root owns them",
                                st.st_uid
                            ),
                        ));
                    }
                    let target = dir.read_link(&name)?;
                    let rest: Vec<OsString> = if target.is_absolute() {
                        dir = Self::root()?;
                        components(&target)?
                            .into_iter()
                            .map(OsStr::to_owned)
                            .collect()
                    } else {
                        // Relative targets resolve against the link's folder: walk it again.
                        let base = normalize(&dir.path.join(&target));
                        let parts: Vec<OsString> = components(&base)?
                            .into_iter()
                            .map(OsStr::to_owned)
                            .collect();
                        dir = Self::root()?;
                        parts
                    };
                    pending.extend(rest.into_iter().rev());
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{}: {e}", dir.path.join(&name).display()),
                    ));
                }
            }
        }
        Ok(dir)
    }

    fn open_child(&self, name: &OsStr) -> io::Result<Self> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: self.path.join(name),
        })
    }

    /// Opens the folder `name` inside this one; a symlink there is refused.
    pub fn child(&self, name: impl AsRef<OsStr>) -> io::Result<Self> {
        let name = name.as_ref();
        self.open_child(name).map_err(|e| {
            if self.is_symlink(name) {
                refused(
                    &self.path.join(name),
                    "is a symlink; certkeeper does not follow it",
                )
            } else {
                e
            }
        })
    }

    /// Creates the folder `name` with `spec` (owner and mode set through its descriptor).
    fn make_dir(&self, name: &OsStr, spec: &Spec) -> io::Result<Self> {
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            // Created meanwhile by someone else: use it if it is a real, trusted folder.
            Err(rustix::io::Errno::EXIST) => return self.open_child(name),
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("cannot create {}: {e}", self.path.join(name).display()),
                ));
            }
        }
        let child = self.open_child(name)?;
        child.set_spec(spec)?;
        self.sync()?;
        Ok(child)
    }

    /// Opens the folder `name`, creating it with `spec` if missing. Returns whether it was
    /// created.
    pub fn child_or_create(
        &self,
        name: impl AsRef<OsStr>,
        spec: &Spec,
    ) -> io::Result<(Self, bool)> {
        let name = name.as_ref();
        match self.child(name) {
            Ok(d) => Ok((d, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((self.make_dir(name, spec)?, true)),
            Err(e) => Err(e),
        }
    }

    /// Sets this folder's owner, then its mode.
    pub fn set_spec(&self, spec: &Spec) -> io::Result<()> {
        chown(&self.fd, spec)?;
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(spec.mode))?;
        Ok(())
    }

    /// Status of the folder itself.
    pub fn own_stat(&self) -> io::Result<Stat> {
        Ok(rustix::fs::fstat(&self.fd)?)
    }

    /// Status of `name`, not following a symlink there.
    pub fn stat(&self, name: impl AsRef<OsStr>) -> io::Result<Stat> {
        Ok(rustix::fs::statat(
            &self.fd,
            name.as_ref(),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Whether `name` exists (as anything, a dangling symlink included).
    pub fn exists(&self, name: impl AsRef<OsStr>) -> bool {
        self.stat(name).is_ok()
    }

    fn is_symlink(&self, name: &OsStr) -> bool {
        self.stat(name).is_ok_and(|st| is_link(&st))
    }

    /// Whether `name` is a symlink.
    pub fn is_link(&self, name: impl AsRef<OsStr>) -> bool {
        self.is_symlink(name.as_ref())
    }

    /// Whether `name` is a folder (not a symlink to one).
    pub fn is_dir(&self, name: impl AsRef<OsStr>) -> bool {
        self.stat(name).is_ok_and(|st| is_dir(&st))
    }

    /// Where the symlink `name` points.
    pub fn read_link(&self, name: impl AsRef<OsStr>) -> io::Result<PathBuf> {
        let target = rustix::fs::readlinkat(&self.fd, name.as_ref(), Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }

    /// Reads the regular file `name` (never through a symlink there), bounded; returns its
    /// bytes and status.
    pub fn read_file(&self, name: impl AsRef<OsStr>, limit: u64) -> io::Result<(Vec<u8>, Stat)> {
        let name = name.as_ref();
        let path = self.path.join(name);
        let fd = open_read(&self.fd, Path::new(name), false).map_err(|e| {
            if self.is_symlink(name) {
                refused(&path, "is a symlink; certkeeper does not follow it here")
            } else {
                io::Error::new(e.kind(), format!("{}: {e}", path.display()))
            }
        })?;
        read_fd(fd, &path, limit)
    }

    /// Creates `name` (which must not exist) with `contents`: opened 0600 with
    /// `O_EXCL|O_NOFOLLOW`, owned as `spec` says before the mode is widened, fsynced. On
    /// failure nothing is left behind.
    pub fn create_file(
        &self,
        name: impl AsRef<OsStr>,
        contents: &[u8],
        spec: &Spec,
    ) -> io::Result<()> {
        let name = name.as_ref();
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let written = (|| -> io::Result<()> {
            chown(&fd, spec)?;
            let mut f = std::fs::File::from(fd.try_clone()?);
            f.write_all(contents)?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(spec.mode))?;
            f.sync_all()
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, name, AtFlags::empty());
        }
        written
    }

    /// Replaces `name` with `contents` atomically: a temporary file beside it, fsync, rename,
    /// fsync of the folder. Whatever was at `name` (a symlink included) is replaced, never
    /// written through.
    pub fn write_atomic(
        &self,
        name: impl AsRef<OsStr>,
        contents: &[u8],
        spec: &Spec,
    ) -> io::Result<()> {
        self.replace_with(name.as_ref(), |tmp| self.create_file(tmp, contents, spec))
    }

    /// Points the symlink `name` at `target` atomically (a fresh link renamed over whatever
    /// was there), then fsyncs the folder.
    pub fn symlink_atomic(&self, name: impl AsRef<OsStr>, target: &Path) -> io::Result<()> {
        self.replace_with(name.as_ref(), |tmp| {
            Ok(rustix::fs::symlinkat(target, &self.fd, tmp)?)
        })
    }

    /// Makes a fresh entry under a temporary name with `make`, renames it over `name`, and
    /// fsyncs the folder; on failure the temporary entry is removed.
    fn replace_with(
        &self,
        name: &OsStr,
        make: impl FnOnce(&OsStr) -> io::Result<()>,
    ) -> io::Result<()> {
        let tmp = temp_name(name);
        make(&tmp)?;
        if let Err(e) = rustix::fs::renameat(&self.fd, &tmp, &self.fd, name) {
            let _ = rustix::fs::unlinkat(&self.fd, &tmp, AtFlags::empty());
            return Err(e.into());
        }
        self.sync()
    }

    /// Renames `from` to `to` inside this folder (replacing `to`), then fsyncs.
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from.as_ref(), &self.fd, to.as_ref())?;
        self.sync()
    }

    /// Removes the file or symlink `name`; a missing one is fine.
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name.as_ref(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the folder `name` if it is empty; a missing or non-empty one is left alone.
    pub fn remove_empty_dir(&self, name: impl AsRef<OsStr>) -> io::Result<bool> {
        match rustix::fs::unlinkat(&self.fd, name.as_ref(), AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(
                rustix::io::Errno::NOENT | rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST,
            ) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the folder `name` and everything in it, never following a symlink.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = name.as_ref();
        let child = match self.child(name) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in child.entries()? {
            if child.is_dir(&entry) {
                child.remove_tree(&entry)?;
            } else {
                child.remove_file(&entry)?;
            }
        }
        drop(child);
        rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)?;
        Ok(())
    }

    /// The names in this folder.
    pub fn entries(&self) -> io::Result<Vec<OsString>> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut dir = rustix::fs::Dir::read_from(&fd)?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(OsStr::from_bytes(n).to_owned());
            }
        }
        Ok(names)
    }

    /// Takes an exclusive `flock` on this folder, held until this `Dir` is dropped: for a
    /// read-modify-write of a file inside it that other processes (or other certificates)
    /// share. Waits while another holder has it; holders only ever keep it for one small
    /// rewrite.
    pub fn lock(&self) -> io::Result<()> {
        Ok(rustix::fs::flock(
            &self.fd,
            rustix::fs::FlockOperation::LockExclusive,
        )?)
    }

    /// Makes what was done in this folder durable.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }
}

/// Sets the owner and group `spec` asks for, through the descriptor.
fn chown(fd: impl AsFd, spec: &Spec) -> io::Result<()> {
    if spec.uid.is_some() || spec.gid.is_some() {
        rustix::fs::fchown(
            fd,
            spec.uid.map(rustix::fs::Uid::from_raw),
            spec.gid.map(rustix::fs::Gid::from_raw),
        )?;
    }
    Ok(())
}

/// Resolves `.` and `..` lexically (for relative symlink targets joined to their folder).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn temp_name(name: &OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".certkeeper-tmp-{:08x}", rand::random::<u32>()));
    tmp
}
