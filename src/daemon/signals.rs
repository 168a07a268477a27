//! Process signals → daemon events. Nothing else in the daemon reads signals.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// What the daemon is asked to do from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGUSR1: check every certificate now.
    CheckNow,
    /// SIGTERM, SIGINT: stop gracefully.
    Stop,
}

/// Listens for SIGHUP, SIGUSR1, SIGTERM and SIGINT and turns them into [`Event`]s.
pub fn process_signals() -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(16);
    let kinds = [
        (SignalKind::hangup(), Event::Reload),
        (SignalKind::user_defined1(), Event::CheckNow),
        (SignalKind::terminate(), Event::Stop),
        (SignalKind::interrupt(), Event::Stop),
    ];
    for (kind, event) in kinds {
        let tx = tx.clone();
        match signal(kind) {
            Ok(mut stream) => {
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        if tx.send(event).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => tracing::error!(error = %e, ?event, "cannot listen for a signal"),
        }
    }
    rx
}
