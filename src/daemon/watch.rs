//! Watches the folders of the configured certificate and key files, so that a file replaced by
//! a person or another tool is re-assessed within seconds. Events are mapped to certificate
//! names (by looking them up in the shared configuration, so no paths are copied); the daemon
//! debounces them.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

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
pub(super) fn watch(config: &Arc<Config>, tx: mpsc::UnboundedSender<CertName>) -> FileWatch {
    let dirs: BTreeSet<&Path> = config
        .certificates
        .iter()
        .flat_map(|c| c.files.all())
        .filter_map(|(_, p)| p.parent())
        .collect();
    let shared = config.clone();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for cert in &shared.certificates {
            if cert
                .files
                .all()
                .iter()
                .any(|(_, f)| event.paths.iter().any(|p| p == f))
            {
                let _ = tx.send(cert.name.clone());
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
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
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
