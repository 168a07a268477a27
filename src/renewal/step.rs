//! The renewal's stable steps. Each is saved before the side effect that follows it, so that
//! after a crash at any instant the next start resumes from the last saved step. Only the
//! reissue/duplicate POST is not idempotent; it is guarded by [`Step::Submitting`], saved
//! before the POST: resuming there looks at the order instead of sending again.
//!
//! ```text
//! Idle ─due─▶ KeyReady ─▶ Submitting ─201─▶ Pending ─issued─▶ Issued ─▶ Installed ─hooks ok─▶ Idle
//!               ▲            │ answer lost: reconcile          ▲            │ hook failed:
//!               └─not found──┘ (match CSR in the order's list) └─rollback───┘ restore previous
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Method, OrderId};

/// What the order looked like when the renewal started, and what we ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSnapshot {
    pub order_id: OrderId,
    pub method: Method,
    /// The order's primary certificate before our request: a reissue is done only when this
    /// changes (the reissue trap, certcentral-api.md §3.1).
    pub certificate_id: Option<u64>,
    pub serial: Option<String>,
    pub common_name: String,
    /// Every name the certificate must cover, common name first.
    pub names: Vec<String>,
    pub server_platform: i64,
    pub signature_hash: String,
    /// The order's end (`yyyy-MM-dd`), for explaining validity errors.
    #[serde(default)]
    pub order_valid_till: Option<String>,
}

/// One renewal attempt: why, since when, for which order, with which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub reason: String,
    pub started: i64,
    pub order: OrderSnapshot,
    pub key_created: i64,
}

/// Where one certificate's renewal stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Monitoring; the scheduler decides when to start.
    #[default]
    Idle,
    /// The new key (0600) and its CSR are stored in the state directory.
    KeyReady { attempt: Attempt },
    /// The reissue/duplicate request is being sent. On resume: reconcile, never resend blindly.
    Submitting { attempt: Attempt, at: i64 },
    /// CertCentral accepted the request; waiting for issuance.
    Pending {
        attempt: Attempt,
        request_id: Option<u64>,
        /// The new certificate's id, when CertCentral told it.
        certificate_id: Option<u64>,
        since: i64,
        polls: u32,
        next_poll: i64,
    },
    /// The issued chain is stored and verified; ready to install.
    Issued {
        attempt: Attempt,
        certificate_id: u64,
        serial: String,
        not_after: i64,
        /// The live generation before this renewal, for rollback.
        previous: Option<String>,
    },
    /// The new set is live; `deploy_check`, `reload` and verification come next.
    Installed {
        attempt: Attempt,
        certificate_id: u64,
        serial: String,
        not_after: i64,
        generation: String,
        previous: Option<String>,
    },
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::KeyReady { .. } => "key_ready",
            Self::Submitting { .. } => "submitting",
            Self::Pending { .. } => "pending",
            Self::Issued { .. } => "issued",
            Self::Installed { .. } => "installed",
        }
    }

    pub fn attempt(&self) -> Option<&Attempt> {
        match self {
            Self::Idle => None,
            Self::KeyReady { attempt }
            | Self::Submitting { attempt, .. }
            | Self::Pending { attempt, .. }
            | Self::Issued { attempt, .. }
            | Self::Installed { attempt, .. } => Some(attempt),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
