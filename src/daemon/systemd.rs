//! systemd notifications (`Type=notify`): READY, RELOADING, STOPPING, STATUS, WATCHDOG. Each is a
//! no-op without `$NOTIFY_SOCKET`.
//!
//! Messages go through a dedicated thread: a datagram send blocks when the receiver's queue is
//! full, and the event loop must never wait on that. Repeated identical STATUS lines are dropped.

use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sd_notify::NotifyState;

/// One notification, owned so it can cross to the notifier thread.
enum Note {
    Ready(String),
    Reloading,
    Status(String),
    Stopping,
    Watchdog,
    /// Acknowledged once everything before it was sent.
    Flush(Sender<()>),
}

fn notifier() -> Option<&'static Mutex<Sender<Note>>> {
    static TX: OnceLock<Option<Mutex<Sender<Note>>>> = OnceLock::new();
    TX.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET")?;
        let (tx, rx) = channel::<Note>();
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                let mut last_status = String::new();
                for note in rx {
                    let sent = match &note {
                        Note::Ready(s) => {
                            sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(s)])
                        }
                        Note::Reloading => match NotifyState::monotonic_usec_now() {
                            Ok(now) => sd_notify::notify(&[NotifyState::Reloading, now]),
                            Err(_) => sd_notify::notify(&[NotifyState::Reloading]),
                        },
                        Note::Status(s) if *s == last_status => continue,
                        Note::Status(s) => sd_notify::notify(&[NotifyState::Status(s)]),
                        Note::Stopping => sd_notify::notify(&[NotifyState::Stopping]),
                        Note::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
                        Note::Flush(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    if let Note::Status(s) | Note::Ready(s) = note {
                        last_status = s;
                    }
                    if let Err(e) = sent {
                        tracing::debug!(error = %e, "cannot notify systemd");
                    }
                }
            });
        spawned.ok().map(|_| Mutex::new(tx))
    })
    .as_ref()
}

fn send(note: Note) {
    if let Some(tx) = notifier() {
        let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(note);
    }
}

pub(super) fn ready(status: &str) {
    send(Note::Ready(status.to_owned()));
}

pub(super) fn reloading() {
    send(Note::Reloading);
}

pub(super) fn status(status: &str) {
    send(Note::Status(status.to_owned()));
}

/// STOPPING=1, waiting (a little) until it is sent: the process exits right after.
pub(super) fn stopping() {
    send(Note::Stopping);
    let (done, acked) = channel();
    send(Note::Flush(done));
    let _ = acked.recv_timeout(Duration::from_secs(1));
}

pub(super) fn watchdog() {
    send(Note::Watchdog);
}

/// How often to ping the watchdog: half of `WatchdogSec=`, if set.
pub(super) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
