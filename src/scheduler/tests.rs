//! The scheduler as a table, and properties over every configuration `check` accepts.

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

/// The ARI tests' certificate (100 days from 0, key rotation off) and a window for its serial
/// `AA` at `at`.
fn with_window(names: &[String], at: i64, once_early: bool) -> (CertState, Policy<'_>) {
    let mut p = policy(names);
    p.rotate_key_after = None;
    p.ari = Some(Ari {
        serial: "AA".into(),
        at,
        once_early,
    });
    (present(0, 100 * DAY, &["x"], true, Some(0)), p)
}

/// A window in the past is honoured at once (a revocation), and marked early; for the
/// certificate that early renewal made, a past window waits for half its life.
#[test]
fn an_early_window_is_honoured_once() {
    let names = vec!["x".to_owned()];
    let (state, p) = with_window(&names, DAY, false);
    assert_eq!(
        assess(&state, &p, Some("AA"), 2 * DAY).due,
        Some(DueReason::RenewalWindow {
            at: DAY,
            early: true
        })
    );
    let (state, p) = with_window(&names, DAY, true);
    let a = assess(&state, &p, Some("AA"), 2 * DAY);
    assert_eq!((a.due, a.renew_at), (None, Some(50 * DAY)));
}

#[test]
fn ari_replaces_renew_before_with_a_safety_net() {
    let names = vec!["x".to_owned()];
    let (state, p) = with_window(&names, 80 * DAY, false);
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
    let (state, p) = with_window(&names, 99 * DAY, false);
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
