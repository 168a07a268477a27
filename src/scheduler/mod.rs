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

use std::time::Duration;

use crate::config::RenewBefore;

mod reason;

pub use reason::{DueReason, Rule};

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
mod tests;
