//! A client-side rate limiter, one per API key and process, shared by every certificate:
//! rolling windows under CertCentral's published limits (1000 requests per 3 minutes and 100
//! per 5 seconds, per key; certcentral-api.md §6), with a margin because the key is often
//! shared with other tooling.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Rolling windows: at most `n` requests in any `window`.
#[derive(Debug)]
pub struct Limiter {
    windows: Vec<(Duration, usize)>,
    sent: Mutex<VecDeque<Instant>>,
}

/// 90% of the published limits.
pub const CERTCENTRAL: [(Duration, usize); 2] = [
    (Duration::from_secs(5), 90),
    (Duration::from_secs(180), 900),
];

impl Limiter {
    pub fn new(windows: &[(Duration, usize)]) -> Self {
        Self {
            windows: windows.to_vec(),
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// The limiter for `key` (an API key's fingerprint): the same for every client of the
    /// process, so that reloads and parallel renewals share one budget.
    pub fn shared(key: &str) -> Arc<Self> {
        static ALL: OnceLock<Mutex<HashMap<String, Arc<Limiter>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        all.entry(key.to_owned())
            .or_insert_with(|| Arc::new(Self::new(&CERTCENTRAL)))
            .clone()
    }

    /// Waits until a request may be sent, and records it.
    pub async fn acquire(&self) {
        loop {
            let wait = self.try_acquire(Instant::now());
            match wait {
                None => return,
                Some(d) => {
                    tracing::debug!(wait = ?d, "client-side rate limit: waiting before the next CertCentral request");
                    tokio::time::sleep(d).await;
                }
            }
        }
    }

    /// Records a request at `now` if every window has room; else says how long to wait.
    fn try_acquire(&self, now: Instant) -> Option<Duration> {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let longest = self
            .windows
            .iter()
            .map(|(w, _)| *w)
            .max()
            .unwrap_or_default();
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= longest)
        {
            sent.pop_front();
        }
        let mut wait = Duration::ZERO;
        for (window, n) in &self.windows {
            let inside = sent
                .iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < *window)
                .count();
            if inside >= *n {
                // The oldest request inside the window must leave it first.
                let oldest_inside = sent[sent.len() - inside];
                wait = wait.max(*window - now.duration_since(oldest_inside));
            }
        }
        if wait.is_zero() {
            sent.push_back(now);
            None
        } else {
            Some(wait + Duration::from_millis(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let l = Limiter::new(&[(Duration::from_secs(5), 3), (Duration::from_secs(60), 5)]);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.try_acquire(t0), None);
        }
        let w = l
            .try_acquire(t0 + Duration::from_secs(1))
            .expect("short window full");
        assert!(
            w > Duration::from_millis(3990) && w < Duration::from_millis(4100),
            "{w:?}"
        );
        assert_eq!(l.try_acquire(t0 + Duration::from_secs(5)), None);
        assert_eq!(l.try_acquire(t0 + Duration::from_secs(5)), None);
        // Five in the last minute: the long window binds until t0 + 60 s.
        let w = l
            .try_acquire(t0 + Duration::from_secs(11))
            .expect("long window full");
        assert!(
            w > Duration::from_secs(48) && w < Duration::from_secs(50),
            "{w:?}"
        );
        assert_eq!(l.try_acquire(t0 + Duration::from_secs(61)), None);
    }
}
