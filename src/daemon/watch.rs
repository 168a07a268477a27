//! Watches the folders of the configured certificate and key files with inotify, so that a file
//! replaced or removed by a person or another tool is re-assessed within seconds.
//!
//! The watch runs as a task on the daemon's own runtime: no thread and no allocator arena of
//! its own, and no copy of the paths (one watch per folder, remembered as the index of a
//! configured file in it, looked up in the shared configuration). Events are mapped to
//! certificate names; the daemon debounces them.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::config::Config;
use crate::model::CertName;

/// Keeps the OS watches alive; dropping it stops them.
pub(super) struct FileWatch {
    task: Option<AbortHandle>,
    /// Some folder did not exist yet: watch again after the next install creates it.
    pub(super) incomplete: bool,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One watched folder: its watch and a configured file in it (certificate and file index).
#[derive(Clone, Copy)]
struct Folder {
    wd: WatchDescriptor,
    cert: usize,
    file: usize,
}

/// The inotify descriptor, registered with the runtime.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Registers the inotify descriptor with the runtime's reactor.
#[expect(
    unsafe_code,
    reason = "AsyncFd::register: the descriptor's owner moves into the AsyncFd"
)]
fn register(inotify: Inotify) -> io::Result<AsyncFd<Fd>> {
    // SAFETY: `Fd` owns the descriptor (an `OwnedFd` inside `Inotify`) and moves into the
    // `AsyncFd`, so it stays open and the same until the `AsyncFd` is dropped; `as_raw_fd`
    // always returns that one descriptor.
    unsafe { AsyncFd::register(Fd(inotify)) }.map_err(io::Error::from)
}

/// Entries of a folder created, replaced, removed, renamed, rewritten or re-owned.
fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_ONLYDIR
}

/// Starts watching the parent folders of every configured file; sends the names of the
/// certificates whose files changed. Must be called within the daemon's runtime.
pub(super) fn watch(config: &Arc<Config>, tx: mpsc::UnboundedSender<CertName>) -> FileWatch {
    let fd = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(io::Error::from)
        .and_then(register)
    {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch files; relying on check_interval");
            return FileWatch {
                task: None,
                incomplete: false,
            };
        }
    };
    let mut seen: BTreeSet<&Path> = BTreeSet::new();
    let mut folders = Vec::new();
    let mut incomplete = false;
    let mut unwatched: Option<(&Path, Errno, usize)> = None;
    for (cert, c) in config.certificates.iter().enumerate() {
        for (file, (_, path)) in c.files.all().into_iter().enumerate() {
            let Some(dir) = path.parent().filter(|d| seen.insert(d)) else {
                continue;
            };
            match fd.get_ref().0.add_watch(dir, mask()) {
                Ok(wd) => folders.push(Folder { wd, cert, file }),
                // A folder that does not exist yet is created at the first install.
                Err(Errno::ENOENT) => incomplete = true,
                Err(e) => {
                    let (_, _, n) = unwatched.get_or_insert((dir, e, 0));
                    *n += 1;
                }
            }
        }
    }
    drop(seen);
    if let Some((dir, error, folders)) = unwatched {
        // ENOSPC: the fs.inotify.max_user_watches limit.
        tracing::warn!(folders, first = %dir.display(), %error, "cannot watch some folders; changes there are seen at check_interval");
    }
    // Two paths to one folder share a watch descriptor: keep both, sorted for lookup.
    folders.sort_by_key(|f| f.wd);
    folders.shrink_to_fit();
    let task = tokio::spawn(forward(fd, folders, config.clone(), tx));
    FileWatch {
        task: Some(task.abort_handle()),
        incomplete,
    }
}

/// Reads events until the daemon stops listening (or the descriptor fails).
async fn forward(
    fd: AsyncFd<Fd>,
    folders: Vec<Folder>,
    config: Arc<Config>,
    tx: mpsc::UnboundedSender<CertName>,
) {
    loop {
        let mut ready = match fd.readable().await {
            Ok(ready) => ready,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch files; relying on check_interval");
                return;
            }
        };
        let events = match ready.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from))
        {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read file events; relying on check_interval");
                return;
            }
            Err(_would_block) => continue,
        };
        for event in &events {
            for name in affected(&config, &folders, event) {
                if tx.send(name.clone()).is_err() {
                    return;
                }
            }
        }
    }
}

/// The certificates that have a file named by `event`. A lost-events overflow names them all.
fn affected<'c>(config: &'c Config, folders: &[Folder], event: &InotifyEvent) -> Vec<&'c CertName> {
    let certs = &config.certificates;
    if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
        return certs.iter().map(|c| &c.name).collect();
    }
    let Some(entry) = event.name.as_deref() else {
        return Vec::new();
    };
    let start = folders.partition_point(|f| f.wd < event.wd);
    let dirs: Vec<&Path> = folders[start..]
        .iter()
        .take_while(|f| f.wd == event.wd)
        .filter_map(|f| {
            let (_, path) = *certs.get(f.cert)?.files.all().get(f.file)?;
            path.parent()
        })
        .collect();
    certs
        .iter()
        .filter(|c| c.files.all().iter().any(|(_, p)| names(p, &dirs, entry)))
        .map(|c| &c.name)
        .collect()
}

/// Whether `path` is `entry` in one of `dirs`.
fn names(path: &Path, dirs: &[&Path], entry: &OsStr) -> bool {
    path.file_name() == Some(entry) && path.parent().is_some_and(|p| dirs.contains(&p))
}
