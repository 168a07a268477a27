//! What the sandbox knows: orders, certificates, requests, domain validation, and how they move
//! with the clock. No HTTP here (see `routes`); everything is serializable, so `--state DIR`
//! keeps it across restarts.
//!
//! Ids live in disjoint spaces (orders as configured, certificates from 20,000,001, requests
//! from 9,000,001, domains from 7,000,001), so a client that confuses them fails here as it
//! would against CertCentral.
//!
//! Domain validation lives in `dcv`, a request's life from submission to issuance in `issue`.

mod dcv;
mod issue;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ca::{Ca, LeafSpec};
use super::faults::{Fault, FaultKind};
use super::{OrderSpec, SandboxConfig};

/// The first id of each space.
const FIRST_CERT_ID: u64 = 20_000_001;
const FIRST_REQUEST_ID: u64 = 9_000_001;
const FIRST_DOMAIN_ID: u64 = 7_000_001;

/// DigiCert's reuse of domain validation for OV/EV (since 2026-02-24: 199 days; dcv.md).
pub(super) const DEFAULT_REUSE: Duration = Duration::from_secs(199 * 86_400);
/// Random values expire after 30 days (dcv.md).
pub(super) const DEFAULT_VALUE_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

pub(super) fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(i64::MAX)
}

pub(super) fn now_s() -> i64 {
    now_ms() / 1000
}

/// Milliseconds of a duration, saturating.
pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A domain of an order and until when its validation holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Domain {
    pub(super) id: u64,
    /// The base domain (`*.example.com` is validated at `example.com`).
    pub(super) name: String,
    /// Unix seconds; 0 when never (or no longer) validated.
    pub(super) validated_until: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Order {
    pub(super) id: u64,
    pub(super) common_name: String,
    pub(super) dns_names: Vec<String>,
    /// The status set by the configuration or a person; a pending reissue shows as
    /// `reissue_pending` on top of it (see [`State::order_status`]).
    pub(super) status: String,
    /// `yyyy-MM-dd`.
    pub(super) valid_till: String,
    pub(super) allow_duplicates: bool,
    pub(super) auto_reissue: bool,
    /// Shown in order info, refused on duplicates.
    pub(super) companion: Option<String>,
    pub(super) current_cert: u64,
    pub(super) created: i64,
    pub(super) multi_year_plan: bool,
    /// DV orders reuse no validation: every issuance needs a fresh DCV (dcv.md).
    pub(super) dv: bool,
    pub(super) dcv_method: String,
    pub(super) random_value: Option<RandomValue>,
    pub(super) domains: Vec<Domain>,
    pub(super) product: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RandomValue {
    pub(super) value: String,
    /// Unix seconds.
    pub(super) expires: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Cert {
    pub(super) id: u64,
    pub(super) order_id: u64,
    pub(super) serial: String,
    /// DER of the leaf.
    pub(super) der: Vec<u8>,
    pub(super) common_name: String,
    pub(super) dns_names: Vec<String>,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    pub(super) created: i64,
    pub(super) csr: String,
    pub(super) truncated: bool,
    pub(super) server_platform: i64,
    pub(super) signature_hash: String,
    pub(super) status: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum SubmitKind {
    Reissue,
    Duplicate,
    /// A new order's first certificate.
    New,
}

impl SubmitKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Reissue => "reissue",
            Self::Duplicate => "duplicate",
            Self::New => "new_request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum SubStatus {
    Pending,
    Approved,
    Issued,
    Rejected,
}

/// What a client asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct NewSubmission {
    /// `certificate.cert_validity.days`, honoured on Multi-year Plan reissues only.
    pub(super) validity_days: Option<u64>,
    pub(super) csr_pem: String,
    pub(super) spki: Vec<u8>,
    pub(super) common_name: String,
    pub(super) dns_names: Vec<String>,
    pub(super) skip_approval: bool,
    pub(super) server_platform: i64,
    pub(super) signature_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Submission {
    pub(super) request_id: u64,
    pub(super) cert_id: u64,
    pub(super) order_id: u64,
    pub(super) kind: SubmitKind,
    pub(super) new: NewSubmission,
    pub(super) created: i64,
    /// Unix milliseconds.
    pub(super) approve_at: i64,
    /// Unix milliseconds, once approved and validated.
    pub(super) issue_at: Option<i64>,
    pub(super) status: SubStatus,
    /// The names are not validated yet: issuance waits for DCV.
    pub(super) awaiting_dcv: bool,
    pub(super) cert_faults: Vec<FaultKind>,
    pub(super) sub_id: u32,
    pub(super) processor_comment: Option<String>,
}

/// Everything the sandbox persists.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Data {
    pub(super) orders: BTreeMap<u64, Order>,
    pub(super) certs: BTreeMap<u64, Cert>,
    pub(super) subs: Vec<Submission>,
    pub(super) next_cert: u64,
    pub(super) next_request: u64,
    pub(super) next_domain: u64,
}

/// One API call the sandbox answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
}

pub(super) struct State {
    pub(super) ca: Ca,
    pub(super) cfg: SandboxConfig,
    pub(super) data: Data,
    pub(super) faults: Vec<Fault>,
    pub(super) log: Vec<RequestRecord>,
    /// Accepted requests per API key, for the rate limits.
    pub(super) recent:
        std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>,
    /// Something changed since the last save.
    pub(super) dirty: bool,
}

/// The base domain a name is validated at.
pub(super) fn base_domain(name: &str) -> &str {
    name.strip_prefix("*.").unwrap_or(name)
}

impl State {
    pub(super) fn new(mut cfg: SandboxConfig, ca: Ca, data: Option<Data>) -> anyhow::Result<Self> {
        let restored = data.is_some();
        let mut s = Self {
            ca,
            faults: std::mem::take(&mut cfg.faults),
            data: data.unwrap_or(Data {
                next_cert: FIRST_CERT_ID,
                next_request: FIRST_REQUEST_ID,
                next_domain: FIRST_DOMAIN_ID,
                ..Data::default()
            }),
            log: Vec::new(),
            recent: std::collections::HashMap::new(),
            dirty: !restored,
            cfg,
        };
        for spec in s.cfg.orders.clone() {
            if !s.data.orders.contains_key(&spec.id) {
                s.add_order(&spec)?;
            }
        }
        Ok(s)
    }

    fn next(counter: &mut u64) -> u64 {
        let id = *counter;
        *counter = counter.saturating_add(1);
        id
    }

    /// Creates an order with a primary certificate for a key nobody outside holds.
    pub(super) fn add_order(&mut self, spec: &OrderSpec) -> anyhow::Result<()> {
        let now = now_s();
        let valid_till = match &spec.order_valid_till {
            Some(d) => {
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .map_err(|e| {
                        anyhow::anyhow!("order {}: invalid order_valid_till {d:?}: {e}", spec.id)
                    })?
                    .to_string()
            }
            None => (OffsetDateTime::now_utc() + Duration::from_secs(365 * 86_400))
                .date()
                .to_string(),
        };
        let cn = spec.common_name.to_ascii_lowercase();
        let mut names: Vec<String> = spec
            .dns_names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        if !names.contains(&cn) {
            names.insert(0, cn.clone());
        }
        let validated_until = match (&spec.validated_until, spec.dv) {
            (_, true) => 0,
            (Some(d), false) => {
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .map_err(|e| {
                        anyhow::anyhow!("order {}: invalid validated_until {d:?}: {e}", spec.id)
                    })?
                    .midnight()
                    .assume_utc()
                    .unix_timestamp()
            }
            (None, false) => {
                now.saturating_add(i64::try_from(self.cfg.dcv_reuse.as_secs()).unwrap_or(i64::MAX))
            }
        };
        let mut domains: Vec<Domain> = Vec::new();
        for n in &names {
            let base = base_domain(n).to_owned();
            if !domains.iter().any(|d| d.name == base) {
                domains.push(Domain {
                    id: Self::next(&mut self.data.next_domain),
                    name: base,
                    validated_until,
                });
            }
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let cert_id = Self::next(&mut self.data.next_cert);
        let not_after =
            now.saturating_add(i64::try_from(self.cfg.validity.as_secs()).unwrap_or(i64::MAX));
        let not_after = not_after.min(order_end(&valid_till));
        let leaf = self.ca.issue(&LeafSpec {
            spki_der: &spki,
            common_name: &cn,
            dns_names: &names,
            not_before: now - 5,
            not_after,
            rogue: false,
        })?;
        self.data.certs.insert(
            cert_id,
            Cert {
                id: cert_id,
                order_id: spec.id,
                serial: leaf.serial,
                der: leaf.der,
                common_name: cn.clone(),
                dns_names: names.clone(),
                not_before: now - 5,
                not_after,
                created: now,
                csr: String::new(),
                truncated: false,
                server_platform: 45,
                signature_hash: "sha256".into(),
                status: "issued".into(),
            },
        );
        self.data.orders.insert(
            spec.id,
            Order {
                id: spec.id,
                common_name: cn.clone(),
                dns_names: names,
                status: spec.status.clone(),
                valid_till,
                allow_duplicates: spec.allow_duplicates,
                auto_reissue: spec.auto_reissue,
                companion: spec.auto_companion.then(|| match cn.strip_prefix("www.") {
                    Some(base) => base.to_owned(),
                    None => format!("www.{cn}"),
                }),
                current_cert: cert_id,
                created: now,
                multi_year_plan: spec.multi_year_plan,
                dv: spec.dv,
                dcv_method: spec.dcv_method.clone().unwrap_or_else(|| "email".into()),
                random_value: None,
                domains,
                product: spec.product.clone().unwrap_or_else(|| {
                    if spec.dv {
                        "ssl_dv_geotrust".into()
                    } else {
                        "ssl_plus".into()
                    }
                }),
            },
        );
        self.dirty = true;
        Ok(())
    }

    /// The status order info shows: a pending reissue (approval, validation or issuance) shows
    /// as `reissue_pending` (DigiCert's "Update order status" page; certcentral-api.md §2.1).
    pub(super) fn order_status(&self, order: &Order) -> String {
        let reissue_pending = self.data.subs.iter().any(|x| {
            x.order_id == order.id
                && x.kind == SubmitKind::Reissue
                && matches!(x.status, SubStatus::Pending | SubStatus::Approved)
        });
        let new_pending = self.data.subs.iter().any(|x| {
            x.order_id == order.id
                && x.kind == SubmitKind::New
                && matches!(x.status, SubStatus::Pending | SubStatus::Approved)
        });
        if new_pending && order.status == "issued" {
            return "pending".into();
        }
        if reissue_pending && order.status == "issued" {
            "reissue_pending".into()
        } else {
            order.status.clone()
        }
    }

    /// Whether a request waits on the order.
    pub(super) fn has_pending_request(&self, order_id: u64) -> bool {
        self.data.subs.iter().any(|x| {
            x.order_id == order_id && matches!(x.status, SubStatus::Pending | SubStatus::Approved)
        })
    }

    /// Whether `key` is over CertCentral's limits; records the request if not.
    pub(super) fn over_limit(&mut self, key: &str) -> bool {
        if !self.cfg.rate_limits {
            return false;
        }
        let now = std::time::Instant::now();
        let sent = self.recent.entry(key.to_owned()).or_default();
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(180))
        {
            sent.pop_front();
        }
        let last_5s = sent
            .iter()
            .filter(|t| now.duration_since(**t) < Duration::from_secs(5))
            .count();
        if last_5s >= 100 || sent.len() >= 1000 {
            return true;
        }
        sent.push_back(now);
        false
    }

    /// Takes the next transport fault, if any.
    pub(super) fn take_transport_fault(&mut self) -> Option<FaultKind> {
        self.take_fault(FaultKind::is_transport)
    }

    /// Takes one pending fault matching `pred`.
    pub(super) fn take_fault(&mut self, pred: impl Fn(&FaultKind) -> bool) -> Option<FaultKind> {
        let f = self
            .faults
            .iter_mut()
            .find(|f| f.count > 0 && pred(&f.kind))?;
        f.count -= 1;
        Some(f.kind.clone())
    }

    /// Whether a fault of this kind is armed (not consumed).
    pub(super) fn has_fault(&self, kind: &FaultKind) -> bool {
        self.faults.iter().any(|f| f.count > 0 && &f.kind == kind)
    }
}

/// Unix seconds at the end of a `yyyy-MM-dd` day.
pub(super) fn order_end(day: &str) -> i64 {
    time::Date::parse(
        day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_or(i64::MAX, |d| {
        d.midnight().assume_utc().unix_timestamp() + 86_399
    })
}
