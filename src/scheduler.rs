//! When is a certificate due? A pure function of the facts on disk, the policy and `now`
//! (unix seconds); it never reads the clock or the disk, so it is tested as a table.
//!
//! A certificate is due (SPEC.md "When a certificate is renewed") when its file is missing or
//! unreadable, it expires within `renew_before` plus its jitter, its key does not match, its
//! names differ from the configured ones, or its key is older than `rotate_key_after`.

use std::fmt;
use std::time::Duration;

use crate::config::RenewBefore;
use crate::model::fmt_time;

/// What is on disk for one certificate.
#[derive(Debug, Clone, PartialEq)]
pub enum CertState {
    /// Missing or unreadable, with the reason.
    Missing(String),
    Present {
        not_before: i64,
        not_after: i64,
        /// DNS SANs, lowercased.
        names: Vec<String>,
        /// Whether `key_file` holds the certificate's private key.
        key_matches: bool,
        /// When the key was created (unix seconds), if known.
        key_created: Option<i64>,
    },
}

/// The renewal policy of one certificate.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    /// Seeds the per-certificate jitter, so it is stable across restarts.
    pub name: &'a str,
    pub renew_before: RenewBefore,
    pub jitter: Duration,
    pub rotate_key_after: Option<Duration>,
    /// Configured names (common name first), if the config names them.
    pub expected_names: Option<&'a [String]>,
    pub check_interval: Duration,
}

/// Why a certificate is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueReason {
    Missing(String),
    Expiring { not_after: i64, renew_at: i64 },
    KeyMismatch,
    NamesDiffer { missing: Vec<String> },
    KeyRotation { age_days: i64 },
    Forced,
}

impl fmt::Display for DueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(why) => write!(f, "certificate missing or unreadable ({why})"),
            Self::Expiring {
                not_after,
                renew_at,
            } => {
                write!(
                    f,
                    "expires {} (renewal window opened {})",
                    fmt_time(*not_after),
                    fmt_time(*renew_at)
                )
            }
            Self::KeyMismatch => f.write_str("key_file does not hold the certificate's key"),
            Self::NamesDiffer { missing } => write!(
                f,
                "certificate lacks configured names: {}",
                missing.join(", ")
            ),
            Self::KeyRotation { age_days } => {
                write!(f, "key is {age_days} days old (rotate_key_after)")
            }
            Self::Forced => f.write_str("forced"),
        }
    }
}

/// The scheduler's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub due: Option<DueReason>,
    /// When the certificate becomes due by time (expiry or key age), if it exists.
    pub renew_at: Option<i64>,
    /// When to look again: `now` if due, else the earlier of `renew_at` and the check interval.
    pub next_check: i64,
}

/// Assesses one certificate.
pub fn assess(state: &CertState, policy: &Policy<'_>, now: i64) -> Assessment {
    let (not_before, not_after, names, key_matches, key_created) = match state {
        CertState::Missing(why) => {
            return Assessment {
                due: Some(DueReason::Missing(why.clone())),
                renew_at: None,
                next_check: now,
            };
        }
        CertState::Present {
            not_before,
            not_after,
            names,
            key_matches,
            key_created,
        } => (*not_before, *not_after, names, *key_matches, *key_created),
    };
    let lifetime = Duration::from_secs(u64::try_from(not_after - not_before).unwrap_or(0));
    let lead = secs(policy.renew_before.lead(lifetime)) + jitter_offset(policy.name, policy.jitter);
    let expiry_at = not_after - lead;
    let rotate_at = match (policy.rotate_key_after, key_created) {
        (Some(after), Some(created)) => Some(created + secs(after)),
        _ => None,
    };
    let renew_at = rotate_at.map_or(expiry_at, |r| r.min(expiry_at));

    let due = if !key_matches {
        Some(DueReason::KeyMismatch)
    } else if let Some(missing) = policy
        .expected_names
        .map(|want| {
            want.iter()
                .filter(|n| !names.iter().any(|h| h.eq_ignore_ascii_case(n)))
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|m| !m.is_empty())
    {
        Some(DueReason::NamesDiffer { missing })
    } else if now >= expiry_at {
        Some(DueReason::Expiring {
            not_after,
            renew_at: expiry_at,
        })
    } else {
        match (rotate_at, key_created) {
            (Some(r), Some(created)) if now >= r => Some(DueReason::KeyRotation {
                age_days: (now - created) / 86_400,
            }),
            _ => None,
        }
    };
    let next_check = if due.is_some() {
        now
    } else {
        renew_at.min(now + secs(policy.check_interval)).max(now)
    };
    Assessment {
        due,
        renew_at: Some(renew_at),
        next_check,
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// A stable per-certificate share of `jitter` (FNV-1a of the name), so a fleet spreads out
/// and a restart does not move the date.
pub fn jitter_offset(name: &str, jitter: Duration) -> i64 {
    let frac = (crate::model::fnv1a(name.bytes()) % 10_000) as f64 / 10_000.0;
    (secs(jitter) as f64 * frac) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn present(
        not_before: i64,
        not_after: i64,
        names: &[&str],
        key_matches: bool,
        key_created: Option<i64>,
    ) -> CertState {
        CertState::Present {
            not_before,
            not_after,
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            key_matches,
            key_created,
        }
    }

    #[test]
    fn table() {
        let names = vec!["a.test".to_owned(), "b.test".to_owned()];
        let policy = Policy {
            name: "www",
            renew_before: RenewBefore::DEFAULT,
            jitter: Duration::ZERO,
            rotate_key_after: Some(Duration::from_secs(60 * DAY as u64)),
            expected_names: Some(&names),
            check_interval: Duration::from_secs(6 * 3600),
        };
        struct Case {
            what: &'static str,
            state: CertState,
            now: i64,
            due: Option<DueReason>,
            next_check: i64,
        }
        let ab = ["a.test", "b.test"];
        let cases = [
            Case {
                what: "missing",
                state: CertState::Missing("no file".into()),
                now: 5,
                due: Some(DueReason::Missing("no file".into())),
                next_check: 5,
            },
            Case {
                what: "fresh: next check by interval",
                state: present(0, 90 * DAY, &ab, true, Some(0)),
                now: DAY,
                due: None,
                next_check: DAY + 6 * 3600,
            },
            Case {
                what: "just before a third is left",
                state: present(0, 90 * DAY, &ab, true, Some(0)),
                now: 60 * DAY - 100,
                due: None,
                next_check: 60 * DAY,
            },
            Case {
                what: "a third left",
                state: present(0, 90 * DAY, &ab, true, Some(50 * DAY)),
                now: 60 * DAY,
                due: Some(DueReason::Expiring {
                    not_after: 90 * DAY,
                    renew_at: 60 * DAY,
                }),
                next_check: 60 * DAY,
            },
            Case {
                what: "key mismatch wins",
                state: present(0, 90 * DAY, &ab, false, Some(0)),
                now: DAY,
                due: Some(DueReason::KeyMismatch),
                next_check: DAY,
            },
            Case {
                what: "names differ",
                state: present(0, 90 * DAY, &["a.test"], true, Some(0)),
                now: DAY,
                due: Some(DueReason::NamesDiffer {
                    missing: vec!["b.test".into()],
                }),
                next_check: DAY,
            },
            Case {
                what: "extra names are fine",
                state: present(
                    0,
                    90 * DAY,
                    &["a.test", "b.test", "www.a.test"],
                    true,
                    Some(0),
                ),
                now: DAY,
                due: None,
                next_check: DAY + 6 * 3600,
            },
            Case {
                what: "key rotation",
                state: present(0, 400 * DAY, &ab, true, Some(0)),
                now: 61 * DAY,
                due: Some(DueReason::KeyRotation { age_days: 61 }),
                next_check: 61 * DAY,
            },
            Case {
                what: "rotation date caps next check",
                state: present(0, 400 * DAY, &ab, true, Some(0)),
                now: 60 * DAY - 10,
                due: None,
                next_check: 60 * DAY,
            },
        ];
        for c in cases {
            let a = assess(&c.state, &policy, c.now);
            assert_eq!((a.due, a.next_check), (c.due, c.next_check), "{}", c.what);
        }
    }

    #[test]
    fn renew_before_duration_and_jitter() {
        let policy = Policy {
            name: "www",
            renew_before: RenewBefore::Before(Duration::from_secs(30 * DAY as u64)),
            jitter: Duration::from_secs(3600),
            rotate_key_after: None,
            expected_names: None,
            check_interval: Duration::from_secs(6 * 3600),
        };
        let j = jitter_offset("www", policy.jitter);
        assert!((0..3600).contains(&j));
        assert_ne!(
            jitter_offset("www", policy.jitter),
            jitter_offset("api", policy.jitter)
        );
        let state = present(0, 90 * DAY, &["x"], true, None);
        assert_eq!(assess(&state, &policy, 60 * DAY - j - 1).due, None);
        assert!(assess(&state, &policy, 60 * DAY - j).due.is_some());
    }
}
