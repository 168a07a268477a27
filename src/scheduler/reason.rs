//! Why a certificate is due, and which rule set its renewal time: what `status`, `check` and
//! the log say.

use std::fmt;

use crate::model::fmt_time;

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
