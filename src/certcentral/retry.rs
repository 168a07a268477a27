//! Backoff as a value: exponential with jitter, capped, and overridden by `Retry-After`.

use std::time::Duration;

/// Exponential backoff: `initial · factor^attempt`, capped at `max`, randomized to between
/// half and all of that ("equal jitter"), so that a fleet does not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
}

impl RetryPolicy {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            factor: 2.0,
            max,
        }
    }

    pub const fn with_factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The wait before retry number `attempt` (0-based). `retry_after` from the server wins,
    /// up to an hour. `unit` is a random number in `[0, 1)` (a parameter so tests are exact).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(Duration::from_secs(3600));
        }
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let exp = self.initial.as_secs_f64() * self.factor.powi(attempt.min(60) as i32);
        let capped = exp.min(self.max.as_secs_f64());
        // NaN or infinity (a factor no caller uses) fall back to the cap.
        Duration::try_from_secs_f64(capped * (0.5 + 0.5 * unit)).unwrap_or(self.max)
    }

    /// [`Self::delay`] with a random `unit`.
    pub fn delay_now(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay(attempt, retry_after, rand::random::<f64>())
    }
}

pub use crate::model::parse_retry_after;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_table() {
        let p = RetryPolicy::new(Duration::from_secs(5), Duration::from_secs(60));
        struct Case {
            attempt: u32,
            retry_after: Option<u64>,
            unit: f64,
            want: f64,
        }
        let cases = [
            Case {
                attempt: 0,
                retry_after: None,
                unit: 0.0,
                want: 2.5,
            },
            Case {
                attempt: 0,
                retry_after: None,
                unit: 1.0,
                want: 5.0,
            },
            Case {
                attempt: 2,
                retry_after: None,
                unit: 1.0,
                want: 20.0,
            },
            Case {
                attempt: 5,
                retry_after: None,
                unit: 1.0,
                want: 60.0,
            },
            Case {
                attempt: 50,
                retry_after: None,
                unit: 0.0,
                want: 30.0,
            },
            Case {
                attempt: 3,
                retry_after: Some(7),
                unit: 0.3,
                want: 7.0,
            },
            Case {
                attempt: 0,
                retry_after: Some(99_999),
                unit: 0.3,
                want: 3600.0,
            },
        ];
        for c in cases {
            let got = p.delay(c.attempt, c.retry_after.map(Duration::from_secs), c.unit);
            assert_eq!(
                got.as_secs_f64(),
                c.want,
                "attempt {} retry_after {:?}",
                c.attempt,
                c.retry_after
            );
        }
    }

    proptest::proptest! {
        /// Any policy the daemon builds (first wait and cap within the config's bounds, the
        /// factors in use), any attempt count, any server `Retry-After` and any `unit`: a
        /// delay, never a panic, never above the cap (or an hour for `Retry-After`).
        #[test]
        fn delay_never_panics_and_respects_its_cap(
            initial in 0u64..=86_400,
            max in 0u64..=(7 * 86_400),
            factor in proptest::sample::select(vec![1.0, 1.5, 2.0, 3.0]),
            attempt: u32,
            retry_after in proptest::option::of(proptest::num::u64::ANY),
            unit: f64,
        ) {
            let p = RetryPolicy::new(Duration::from_secs(initial), Duration::from_secs(max))
                .with_factor(factor);
            let got = p.delay(attempt, retry_after.map(Duration::from_secs), unit);
            let cap = match retry_after {
                Some(_) => Duration::from_secs(3600),
                None => Duration::from_secs(max),
            };
            proptest::prop_assert!(got <= cap, "{got:?} > {cap:?}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
