//! Watches the folders of the configured certificate and key files, so that a file replaced by
//! a person or another tool is re-assessed within seconds. Events are mapped to certificate
//! names; the daemon debounces them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::model::CertName;

/// Keeps the OS watches alive; dropping it stops them.
pub(super) struct FileWatch {
    _watcher: Option<notify::RecommendedWatcher>,
    /// Some folder did not exist yet: watch again after the next install creates it.
    pub(super) incomplete: bool,
}

/// Starts watching the parent folders of every configured file; sends the names of the
/// certificates whose files changed.
pub(super) fn watch(config: &Config, tx: mpsc::UnboundedSender<CertName>) -> FileWatch {
    let files: Vec<(PathBuf, CertName)> = config
        .certificates
        .iter()
        .flat_map(|c| {
            c.files
                .all()
                .into_iter()
                .map(move |(_, p)| (p.to_path_buf(), c.name.clone()))
        })
        .collect();
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|(p, _)| p.parent().map(Path::to_path_buf))
        .collect();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for path in &event.paths {
            for (file, name) in &files {
                if path == file {
                    let _ = tx.send(name.clone());
                }
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch files; relying on check_interval");
            return FileWatch {
                _watcher: None,
                incomplete: false,
            };
        }
    };
    let mut incomplete = false;
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            // A folder that does not exist yet is created at the first install.
            tracing::debug!(dir = %dir.display(), error = %e, "cannot watch folder");
            incomplete = true;
        }
    }
    FileWatch {
        _watcher: Some(watcher),
        incomplete,
    }
}
