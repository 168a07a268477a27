//! When is a certificate due? A pure function of the facts on disk, the policy and `now`
//! (unix seconds); it never reads the clock or the disk, so it is tested as a table.
//!
//! A certificate is due (SPEC.md "When a certificate is renewed") when its file is missing or
//! unreadable, its key does not match, its names differ from the configured ones (either way),
//! or its renewal time has come: it expires within `renew_before` plus its jitter, its key is
//! older than `rotate_key_after`, or (ACME with ARI, RFC 9773) the CA's window says so.
//!
//! Two rules keep expiry-based timing from renewing in a loop when lifetimes shrink under it (a
//! fleet configured for 397-day certificates meeting 47-day ones):
//!
//! - the lead (`renew_before` plus jitter) is capped at half the certificate's lifetime;
//! - no expiry-based reason fires before half the lifetime has passed since the certificate's
//!   start or its last renewal, whichever is later.
//!
//! So a freshly issued certificate is never due by expiry, whatever the configuration says. Key
//! rotation is by the key's age alone: it cannot loop, as every rotation makes a new key whose
//! age starts at zero (and `rotate_key_after` is at least a day). With ARI, the CA's window
//! replaces `renew_before`, and a safety net remains: renew regardless once a twentieth of the
//! lifetime is left (as certmagic does).
//!
//! An extra name in the certificate is tolerated only when it is the free companion some
//! CertCentral products add to the common name (`www.` and the base domain, or the base domain
//! of a wildcard); any other extra name makes the certificate due, to be reissued without it.

use std::fmt;
use std::time::Duration;

use crate::config::RenewBefore;
use crate::model::fmt_time;

/// The longest certkeeper waits before asking an ACME CA for its renewal window again.
pub const ARI_REFRESH_MAX: Duration = Duration::from_secs(86_400);

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
        /// When a renewal last completed, if known.
        last_renewed: Option<i64>,
    },
}

/// The CA's suggested renewal time for one certificate (ACME ARI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ari {
    /// The serial of the certificate the window is for.
    pub serial: String,
    /// The point in the window chosen to renew at.
    pub at: i64,
    /// This certificate came from a renewal the CA asked for early (a window before half its
    /// predecessor's life): an early window of its own waits for half its life, so a CA that
    /// keeps answering with a past window gets one early renewal, not a loop.
    pub once_early: bool,
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
    pub ari: Option<Ari>,
}

/// Why a certificate is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueReason {
    Missing(String),
    Expiring {
        not_after: i64,
        renew_at: i64,
    },
    KeyMismatch,
    /// Configured names the certificate lacks, and names it has that are no longer configured.
    NamesDiffer {
        missing: Vec<String>,
        extra: Vec<String>,
    },
    KeyRotation {
        age_days: i64,
    },
    /// The ACME CA's renewal window (ARI) has come; `early` when it came before half the
    /// certificate's life (a revocation, a CA incident).
    RenewalWindow {
        at: i64,
        early: bool,
    },
    /// Under a twentieth of the lifetime is left (the safety net beside ARI).
    SafetyNet {
        not_after: i64,
    },
    Forced,
}

impl DueReason {
    /// Whether nobody asked for this renewal and no time rule calls for it: the file is gone
    /// or replaced. Such renewals are rate-limited, and the links are repaired first when the
    /// live certificate is intact.
    pub fn is_unrequested(&self) -> bool {
        matches!(self, Self::Missing(_) | Self::KeyMismatch)
    }
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
            Self::NamesDiffer { missing, extra } => {
                let mut parts = Vec::with_capacity(2);
                if !missing.is_empty() {
                    parts.push(format!(
                        "certificate lacks configured names: {}",
                        missing.join(", ")
                    ));
                }
                if !extra.is_empty() {
                    parts.push(format!(
                        "certificate has names no longer configured: {}",
                        extra.join(", ")
                    ));
                }
                f.write_str(&parts.join("; "))
            }
            Self::KeyRotation { age_days } => {
                write!(f, "key is {age_days} days old (rotate_key_after)")
            }
            Self::RenewalWindow { at, .. } => write!(
                f,
                "the CA's renewal window (ARI) says renew now (chosen time {})",
                fmt_time(*at)
            ),
            Self::SafetyNet { not_after } => write!(
                f,
                "expires {} with under a twentieth of its lifetime left",
                fmt_time(*not_after)
            ),
            Self::Forced => f.write_str("forced"),
        }
    }
}

/// Which rule set the renewal time, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `renew_before` (plus jitter).
    RenewBefore,
    /// `renew_before` capped at half the lifetime.
    HalfLife,
    /// `rotate_key_after`.
    RotateKey,
    /// The ACME CA's window (ARI).
    Ari,
    /// The twentieth-of-the-lifetime safety net beside ARI.
    SafetyNet,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RenewBefore => "renew_before",
            Self::HalfLife => "half-life cap",
            Self::RotateKey => "rotate_key_after",
            Self::Ari => "ari",
            Self::SafetyNet => "safety net",
        }
    }
}

/// The scheduler's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub due: Option<DueReason>,
    /// When the certificate becomes due by time, if it exists.
    pub renew_at: Option<i64>,
    /// The rule that set `renew_at`.
    pub rule: Option<Rule>,
    /// When to look again: `now` if due, else the earlier of `renew_at` and the check interval.
    pub next_check: i64,
    /// A policy value that does not fit this certificate (said by `check` and the log).
    pub note: Option<String>,
}

/// Assesses one certificate. `serial` is the installed certificate's, to match an ARI window.
pub fn assess(
    state: &CertState,
    policy: &Policy<'_>,
    serial: Option<&str>,
    now: i64,
) -> Assessment {
    let (not_before, not_after, names, key_matches, key_created, last_renewed) = match state {
        CertState::Missing(why) => {
            return Assessment {
                due: Some(DueReason::Missing(why.clone())),
                renew_at: None,
                rule: None,
                next_check: now,
                note: None,
            };
        }
        CertState::Present {
            not_before,
            not_after,
            names,
            key_matches,
            key_created,
            last_renewed,
        } => (
            *not_before,
            *not_after,
            names,
            *key_matches,
            *key_created,
            *last_renewed,
        ),
    };
    let lifetime = not_after.saturating_sub(not_before).max(0);
    let half = lifetime / 2;
    // No expiry-based reason before half the lifetime since the start or the last renewal.
    let started = last_renewed
        .filter(|t| *t <= now)
        .map_or(not_before, |t| t.max(not_before));
    let floor = started.saturating_add(half);

    let configured = secs(
        policy
            .renew_before
            .lead(Duration::from_secs(u64::try_from(lifetime).unwrap_or(0))),
    )
    .saturating_add(jitter_offset(policy.name, policy.jitter));
    let mut note = None;
    let lead = if configured > half {
        note = Some(format!(
            "renew_before ({}) plus jitter exceeds half of this certificate's {} lifetime: it is renewed at half its life instead",
            policy.renew_before,
            humantime::format_duration(Duration::from_secs(u64::try_from(lifetime).unwrap_or(0)))
        ));
        half
    } else {
        configured
    };
    let rotate_at = match (policy.rotate_key_after, key_created) {
        (Some(after), Some(created)) => Some(created.saturating_add(secs(after))),
        _ => None,
    };
    let ari = policy
        .ari
        .as_ref()
        .filter(|a| Some(a.serial.as_str()) == serial);
    let mut candidates: Vec<(i64, Rule)> = Vec::with_capacity(3);
    match ari {
        Some(a) => {
            let at = if a.once_early { a.at.max(floor) } else { a.at };
            candidates.push((at, Rule::Ari));
            candidates.push((not_after.saturating_sub(lifetime / 20), Rule::SafetyNet));
        }
        None => {
            let rule = if note.is_some() {
                Rule::HalfLife
            } else {
                Rule::RenewBefore
            };
            candidates.push((not_after.saturating_sub(lead).max(floor), rule));
        }
    }
    if let Some(r) = rotate_at {
        candidates.push((r, Rule::RotateKey));
    }
    let (renew_at, rule) = candidates
        .into_iter()
        .min_by_key(|(t, _)| *t)
        .unwrap_or((not_after, Rule::RenewBefore));

    let due = if !key_matches {
        Some(DueReason::KeyMismatch)
    } else if let Some((missing, extra)) = policy
        .expected_names
        .map(|want| names_differ(want, names))
        .filter(|(m, e)| !m.is_empty() || !e.is_empty())
    {
        Some(DueReason::NamesDiffer { missing, extra })
    } else if now >= renew_at {
        Some(match rule {
            Rule::RenewBefore | Rule::HalfLife => DueReason::Expiring {
                not_after,
                renew_at,
            },
            Rule::RotateKey => DueReason::KeyRotation {
                age_days: key_created.map_or(0, |c| now.saturating_sub(c) / 86_400),
            },
            Rule::Ari => DueReason::RenewalWindow {
                at: renew_at,
                early: renew_at < floor,
            },
            Rule::SafetyNet => DueReason::SafetyNet { not_after },
        })
    } else {
        None
    };
    let next_check = if due.is_some() {
        now
    } else {
        renew_at
            .min(now.saturating_add(secs(policy.check_interval)))
            .max(now)
    };
    Assessment {
        due,
        renew_at: Some(renew_at),
        rule: Some(rule),
        next_check,
        note,
    }
}

/// The configured names `want` (common name first) the certificate's `have` lacks, and the
/// names it has beyond them, less the common name's free companion.
fn names_differ(want: &[String], have: &[String]) -> (Vec<String>, Vec<String>) {
    let has = |list: &[String], n: &str| list.iter().any(|h| h.eq_ignore_ascii_case(n));
    let missing = want.iter().filter(|n| !has(have, n)).cloned().collect();
    let extra = have
        .iter()
        .filter(|n| !has(want, n) && !want.first().is_some_and(|cn| is_companion(cn, n)))
        .cloned()
        .collect();
    (missing, extra)
}

/// Whether `name` is the companion CertCentral adds for free to common name `cn`:
/// `www.example.com` for `example.com` and back, `example.com` for `*.example.com`.
fn is_companion(cn: &str, name: &str) -> bool {
    let cn = cn.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    crate::model::companion(&cn) == name || cn.strip_prefix("*.") == Some(name.as_str())
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

/// A random point in an ARI window `[start, end)`, never before `now` (RFC 9773 §4.2: "select
/// a uniform random time within the suggested window").
pub fn ari_point(start: i64, end: i64, now: i64, unit: f64) -> i64 {
    let start = start.max(now);
    if end <= start {
        return start;
    }
    let span = end.saturating_sub(start) as f64;
    start
        .saturating_add((span * unit.clamp(0.0, 1.0)) as i64)
        .min(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
            last_renewed: None,
        }
    }

    fn policy<'a>(names: &'a [String]) -> Policy<'a> {
        Policy {
            name: "www",
            renew_before: RenewBefore::DEFAULT,
            jitter: Duration::ZERO,
            rotate_key_after: Some(Duration::from_secs(60 * DAY as u64)),
            expected_names: Some(names),
            check_interval: Duration::from_secs(6 * 3600),
            ari: None,
        }
    }

    #[test]
    fn table() {
        let names = vec!["a.test".to_owned(), "b.test".to_owned()];
        let policy = policy(&names);
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
                    extra: vec![],
                }),
                next_check: DAY,
            },
            Case {
                what: "a name no longer configured",
                state: present(0, 90 * DAY, &["a.test", "b.test", "c.test"], true, Some(0)),
                now: DAY,
                due: Some(DueReason::NamesDiffer {
                    missing: vec![],
                    extra: vec!["c.test".into()],
                }),
                next_check: DAY,
            },
            Case {
                what: "the common name's free www companion is fine",
                state: present(
                    0,
                    90 * DAY,
                    &["a.test", "B.test", "www.a.test"],
                    true,
                    Some(0),
                ),
                now: DAY,
                due: None,
                next_check: DAY + 6 * 3600,
            },
            Case {
                what: "a www name of another configured name is not a companion",
                state: present(
                    0,
                    90 * DAY,
                    &["a.test", "b.test", "www.b.test"],
                    true,
                    Some(0),
                ),
                now: DAY,
                due: Some(DueReason::NamesDiffer {
                    missing: vec![],
                    extra: vec!["www.b.test".into()],
                }),
                next_check: DAY,
            },
            Case {
                what: "key rotation",
                state: present(0, 400 * DAY, &ab, true, Some(0)),
                now: 200 * DAY,
                due: Some(DueReason::KeyRotation { age_days: 200 }),
                next_check: 200 * DAY,
            },
            Case {
                what: "rotation by key age alone, early in a long lifetime",
                state: present(30 * DAY, 400 * DAY, &ab, true, Some(0)),
                now: 60 * DAY,
                due: Some(DueReason::KeyRotation { age_days: 60 }),
                next_check: 60 * DAY,
            },
            Case {
                what: "a key younger than rotate_key_after",
                state: present(0, 400 * DAY, &ab, true, Some(0)),
                now: 59 * DAY,
                due: None,
                next_check: 59 * DAY + 6 * 3600,
            },
        ];
        for c in cases {
            let a = assess(&c.state, &policy, None, c.now);
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
            ari: None,
        };
        let j = jitter_offset("www", policy.jitter);
        assert!((0..3600).contains(&j));
        assert_ne!(
            jitter_offset("www", policy.jitter),
            jitter_offset("api", policy.jitter)
        );
        let state = present(0, 90 * DAY, &["x"], true, None);
        assert_eq!(assess(&state, &policy, None, 60 * DAY - j - 1).due, None);
        assert!(assess(&state, &policy, None, 60 * DAY - j).due.is_some());
    }

    /// One-hour certificates with `renew_before = "2h"` (the loop of 136 reissues in 15 s):
    /// the lead is capped at half the lifetime, and the note says why.
    #[test]
    fn a_lead_longer_than_the_lifetime_is_capped() {
        let names = vec!["x".to_owned()];
        let mut p = policy(&names);
        p.renew_before = RenewBefore::Before(Duration::from_secs(7200));
        p.rotate_key_after = None;
        let state = present(0, 3600, &["x"], true, Some(0));
        let fresh = assess(&state, &p, None, 1);
        assert_eq!(fresh.due, None, "a fresh certificate is never due by time");
        assert_eq!(
            (fresh.renew_at, fresh.rule),
            (Some(1800), Some(Rule::HalfLife))
        );
        assert!(
            fresh
                .note
                .as_deref()
                .is_some_and(|n| n.contains("exceeds half")),
            "{fresh:?}"
        );
        assert!(assess(&state, &p, None, 1800).due.is_some());
    }

    /// After a renewal, no time-based reason fires again before half the new lifetime, even
    /// when the CA backdates `not_before` (a duplicate keeps the original's dates).
    #[test]
    fn no_time_based_renewal_before_half_life_since_the_last() {
        let names = vec!["x".to_owned()];
        let p = policy(&names);
        let state = CertState::Present {
            not_before: 0,
            not_after: 90 * DAY,
            names: vec!["x".into()],
            key_matches: true,
            key_created: Some(70 * DAY),
            last_renewed: Some(70 * DAY),
        };
        assert_eq!(assess(&state, &p, None, 71 * DAY).due, None);
    }

    /// A window in the past is honoured at once (a revocation), and marked early; for the
    /// certificate that early renewal made, a past window waits for half its life.
    #[test]
    fn an_early_window_is_honoured_once() {
        let names = vec!["x".to_owned()];
        let mut p = policy(&names);
        p.rotate_key_after = None;
        let state = present(0, 100 * DAY, &["x"], true, Some(0));
        p.ari = Some(Ari {
            serial: "AA".into(),
            at: DAY,
            once_early: false,
        });
        assert_eq!(
            assess(&state, &p, Some("AA"), 2 * DAY).due,
            Some(DueReason::RenewalWindow {
                at: DAY,
                early: true
            })
        );
        p.ari = Some(Ari {
            serial: "AA".into(),
            at: DAY,
            once_early: true,
        });
        let a = assess(&state, &p, Some("AA"), 2 * DAY);
        assert_eq!((a.due, a.renew_at), (None, Some(50 * DAY)));
    }

    #[test]
    fn ari_replaces_renew_before_with_a_safety_net() {
        let names = vec!["x".to_owned()];
        let mut p = policy(&names);
        p.rotate_key_after = None;
        let state = present(0, 100 * DAY, &["x"], true, Some(0));
        p.ari = Some(Ari {
            serial: "AA".into(),
            at: 80 * DAY,
            once_early: false,
        });
        let a = assess(&state, &p, Some("AA"), DAY);
        assert_eq!((a.renew_at, a.rule), (Some(80 * DAY), Some(Rule::Ari)));
        assert_eq!(
            assess(&state, &p, Some("AA"), 80 * DAY).due,
            Some(DueReason::RenewalWindow {
                at: 80 * DAY,
                early: false
            })
        );
        // A window later than the safety net: the net wins.
        p.ari = Some(Ari {
            serial: "AA".into(),
            at: 99 * DAY,
            once_early: false,
        });
        let a = assess(&state, &p, Some("AA"), DAY);
        assert_eq!(
            (a.renew_at, a.rule),
            (Some(95 * DAY), Some(Rule::SafetyNet))
        );
        // A window for another certificate is ignored.
        let a = assess(&state, &p, Some("BB"), DAY);
        assert_eq!(a.rule, Some(Rule::RenewBefore));
    }

    #[test]
    fn ari_points_are_inside_the_window_and_never_past() {
        assert_eq!(ari_point(100, 200, 0, 0.0), 100);
        assert_eq!(ari_point(100, 200, 0, 1.0), 200);
        assert_eq!(ari_point(100, 200, 150, 0.5), 175);
        assert_eq!(
            ari_point(100, 200, 300, 0.5),
            300,
            "a past window means now"
        );
    }

    fn renew_before() -> impl Strategy<Value = RenewBefore> {
        prop_oneof![
            (0u64..=3650 * DAY as u64).prop_map(|s| RenewBefore::Before(Duration::from_secs(s))),
            (1u32..100).prop_map(|p| RenewBefore::Share(f64::from(p) / 100.0)),
        ]
    }

    proptest! {
        /// No accepted configuration (any lead, jitter and rotation within the config's bounds)
        /// makes a freshly issued certificate with a key younger than `rotate_key_after` due,
        /// whatever its lifetime.
        #[test]
        fn a_fresh_certificate_is_never_due(
            lifetime in 60i64..(4000 * DAY),
            age_share in 0.0f64..0.49,
            rb in renew_before(),
            jitter in 0u64..=(30 * DAY as u64),
            rotate in proptest::option::of((DAY as u64)..=(3650 * DAY as u64)),
            key_share in 0.0f64..1.0,
            not_before in 0i64..(100_000 * DAY),
        ) {
            let names = vec!["x".to_owned()];
            let p = Policy {
                name: "www",
                renew_before: rb,
                jitter: Duration::from_secs(jitter),
                rotate_key_after: rotate.map(Duration::from_secs),
                expected_names: Some(&names),
                check_interval: Duration::from_secs(3600),
                ari: None,
            };
            let now = not_before + (lifetime as f64 * age_share) as i64;
            // The key is younger than rotate_key_after, as a key is right after a rotation.
            let key_age = rotate.map_or(now - not_before, |r| (r as f64 * key_share) as i64);
            let state = CertState::Present {
                not_before,
                not_after: not_before + lifetime,
                names: names.clone(),
                key_matches: true,
                key_created: Some(now - key_age),
                last_renewed: Some(not_before),
            };
            let a = assess(&state, &p, None, now);
            prop_assert_eq!(a.due, None);
            prop_assert!(a.next_check >= now);
        }
    }
}
