//! The renewal's stable steps. Each is saved before the side effect that follows it, so that
//! after a crash at any instant the next start resumes from the last saved step.
//!
//! ```text
//!                 ┌──────── not found: send again ────────┐
//!                 ▼                                       │
//! Idle ─due─▶ KeyReady ─▶ Submitting ─accepted─▶ Pending ─┴─issued─▶ Issued ─▶ Installed ─hooks ok─▶ Idle
//!  ▲                        │ answer lost:        ▲   │                ▲          │ a hook failed
//!  │                        └─ reconcile ─────────┘   │ validation     │          ▼
//!  │                                                  ▼ needed         │      RollingBack
//!  │                                              Validating           └─ restore, reload,
//!  │                                   publish ─▶ propagate ─▶ ask CA      record, retry
//!  │                                   (each record journaled first)
//!  └──── abandon: the config no longer matches, the order ended, the CA refused ─────────┘
//! ```
//!
//! - **Submitting** guards the one request that is not idempotent (CertCentral's reissue or
//!   duplicate POST, ACME's newOrder): resuming there looks for the request instead of sending
//!   it again.
//! - **Validating** publishes what the CA checks (CertCentral's DCV token, ACME challenges),
//!   waits until DNS records are visible, asks the CA to check, and keeps checking with the poll
//!   backoff. Every record is written to the journal *before* it is published and stays there
//!   until it is removed again: publications exist only while the step is `Validating`, and
//!   any other step first removes what is left (after issuance, a failure, an abandon or a crash).
//! - **RollingBack** is saved before the previous files are restored, so an interrupted
//!   rollback is finished at the next start and never mistaken for a successful renewal.
//!
//! Issuer-specific data lives in [`Target`] (what is renewed) and [`Request`] (what the CA
//! accepted); the steps are the same for CertCentral and ACME.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Method, OrderId};

/// A CertCentral order as it was when the renewal started, and what we ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSnapshot {
    pub order_id: OrderId,
    pub method: Method,
    /// The order's primary certificate before our request: a reissue is done only when this
    /// changes (the reissue trap, certcentral-api.md §3.1).
    pub certificate_id: Option<u64>,
    pub serial: Option<String>,
    pub server_platform: i64,
    pub signature_hash: String,
    /// The order's end (`yyyy-MM-dd`), for explaining validity errors.
    #[serde(default)]
    pub order_valid_till: Option<String>,
    /// Whether the order is a Multi-year Plan (only those take `cert_validity`).
    #[serde(default)]
    pub multi_year_plan: bool,
    /// The order's DCV method and random value, where order info carried them.
    #[serde(default)]
    pub dcv_method: Option<String>,
    #[serde(default)]
    pub dcv_random_value: Option<String>,
}

/// An ACME CA and what the new order carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeTarget {
    /// The `[[acme]]` name.
    pub acme: String,
    /// The directory URL used (with DigiCert's `?action=…&orderId=N` when configured).
    pub directory: String,
    /// The ARI identifier of the certificate this one replaces (RFC 9773 `replaces`).
    #[serde(default)]
    pub replaces: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
}

/// What is renewed, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "issuer", rename_all = "snake_case")]
pub enum Target {
    CertCentral(OrderSnapshot),
    Acme(AcmeTarget),
}

impl Target {
    /// The CertCentral order, for CertCentral renewals.
    pub fn order(&self) -> Option<&OrderSnapshot> {
        match self {
            Self::CertCentral(o) => Some(o),
            Self::Acme(_) => None,
        }
    }
}

/// One renewal attempt: why, since when, for which names, with which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub reason: String,
    pub started: i64,
    pub key_created: i64,
    pub common_name: String,
    /// Every name the certificate must cover, common name first.
    pub names: Vec<String>,
    pub target: Target,
    /// Started because the CA's renewal window came early (see `scheduler::Ari::once_early`).
    #[serde(default)]
    pub early_ari: bool,
}

/// CertCentral's random value for DCV (dcv.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomValue {
    pub value: String,
    /// Unix seconds; after it, a new value is asked for.
    pub expires: Option<i64>,
}

/// What the CA accepted, by issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "issuer", rename_all = "snake_case")]
pub enum Request {
    CertCentral {
        request_id: Option<u64>,
        /// The new certificate's id, when CertCentral told it.
        certificate_id: Option<u64>,
        #[serde(default)]
        random_value: Option<RandomValue>,
        /// Whether the order's DCV method is known to be the configured one (switched with
        /// `PUT …/dcv-method` when it differed).
        #[serde(default)]
        method_set: bool,
        /// CertCentral said certificate `certificate_id` is issued: only its download is left.
        #[serde(default)]
        issued: bool,
    },
    Acme {
        /// The order URL, journaled before anything else is done with the order.
        order_url: String,
    },
}

impl Request {
    /// The CertCentral request id, if any.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Self::CertCentral { request_id, .. } => *request_id,
            Self::Acme { .. } => None,
        }
    }
}

/// Where a validation round stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    pub since: i64,
    /// Checks asked of the CA so far (drives the backoff).
    pub checks: u32,
    pub next_check: i64,
    /// Until when to wait for DNS records to become visible.
    #[serde(default)]
    pub propagation_deadline: Option<i64>,
    /// Whether the CA was told the records are ready (ACME's challenge POST; done once).
    #[serde(default)]
    pub asked: bool,
    /// Whether every DNS record was seen where the CA looks: one that disappears after is
    /// published again.
    #[serde(default)]
    pub visible: bool,
    /// The CA's last answer, for `status` (e.g. `invalid_dns_txt: …`).
    #[serde(default)]
    pub last_answer: Option<String>,
    /// The names the CA has not validated yet, as it last said.
    #[serde(default)]
    pub unvalidated: Vec<String>,
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
    /// The request is being sent. On resume: reconcile, never resend blindly.
    Submitting { attempt: Attempt, at: i64 },
    /// The CA accepted the request; waiting for approval or issuance.
    Pending {
        attempt: Attempt,
        request: Request,
        since: i64,
        polls: u32,
        next_poll: i64,
    },
    /// Publishing what the CA checks, and asking it to check.
    Validating {
        attempt: Attempt,
        request: Request,
        validation: Validation,
    },
    /// The issued chain is stored and verified; ready to install.
    Issued {
        attempt: Attempt,
        serial: String,
        not_after: i64,
        /// The live generation before this renewal, for rollback.
        previous: Option<String>,
    },
    /// The new set is live; `deploy_check`, `reload` and verification come next.
    Installed {
        attempt: Attempt,
        serial: String,
        not_after: i64,
        generation: String,
        previous: Option<String>,
    },
    /// A deployment failed: the previous set is being restored and reloaded.
    RollingBack {
        attempt: Attempt,
        serial: String,
        not_after: i64,
        generation: String,
        previous: Option<String>,
        error: String,
    },
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::KeyReady { .. } => "key_ready",
            Self::Submitting { .. } => "submitting",
            Self::Pending { .. } => "pending",
            Self::Validating { .. } => "validating",
            Self::Issued { .. } => "issued",
            Self::Installed { .. } => "installed",
            Self::RollingBack { .. } => "rolling_back",
        }
    }

    pub fn attempt(&self) -> Option<&Attempt> {
        match self {
            Self::Idle => None,
            Self::KeyReady { attempt }
            | Self::Submitting { attempt, .. }
            | Self::Pending { attempt, .. }
            | Self::Validating { attempt, .. }
            | Self::Issued { attempt, .. }
            | Self::Installed { attempt, .. }
            | Self::RollingBack { attempt, .. } => Some(attempt),
        }
    }

    /// The certificate CertCentral has issued for this renewal and that is being downloaded.
    pub fn downloading(&self) -> Option<u64> {
        match self {
            Self::Pending {
                request:
                    Request::CertCentral {
                        certificate_id: Some(id),
                        issued: true,
                        ..
                    },
                ..
            } => Some(*id),
            _ => None,
        }
    }

    /// The CA's request, while one is pending or being validated.
    pub fn request(&self) -> Option<&Request> {
        match self {
            Self::Pending { request, .. } | Self::Validating { request, .. } => Some(request),
            _ => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
