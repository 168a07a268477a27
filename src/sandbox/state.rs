//! What the sandbox knows: orders, certificates, requests, domain validation, and how they move
//! with the clock. No HTTP here (see `routes`); everything is serializable, so `--state DIR`
//! keeps it across restarts.
//!
//! Ids live in disjoint spaces (orders as configured, certificates from 20,000,001, requests
//! from 9,000,001, domains from 7,000,001), so a client that confuses them fails here as it
//! would against CertCentral.

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

    /// The base domains of `names` whose validation does not hold now.
    pub(super) fn unvalidated(&self, order: &Order, names: &[String]) -> Vec<String> {
        let now = now_s();
        let mut out = Vec::new();
        for n in names {
            let base = base_domain(n);
            let ok = !order.dv && covered(order, base, now);
            if !ok && !out.iter().any(|o: &String| o == base) {
                out.push(base.to_owned());
            }
        }
        out
    }

    /// The order's random value, a new one if there is none or it expired (dcv.md).
    pub(super) fn random_value(&mut self, order_id: u64) -> Option<RandomValue> {
        let now = now_s();
        let lifetime = i64::try_from(self.cfg.dcv_value_lifetime.as_secs()).unwrap_or(i64::MAX);
        let order = self.data.orders.get_mut(&order_id)?;
        match &order.random_value {
            Some(v) if v.expires > now => Some(v.clone()),
            _ => {
                let bytes: [u8; 16] = rand::random();
                let v = RandomValue {
                    value: bytes.iter().map(|b| format!("{b:02x}")).collect(),
                    expires: now.saturating_add(lifetime),
                };
                order.random_value = Some(v.clone());
                self.dirty = true;
                Some(v)
            }
        }
    }

    /// Records that `domains` of the order were validated now.
    pub(super) fn validated(&mut self, order_id: u64, domains: &[String]) {
        let now = now_s();
        let reuse = i64::try_from(self.cfg.dcv_reuse.as_secs()).unwrap_or(i64::MAX);
        if let Some(order) = self.data.orders.get_mut(&order_id) {
            for d in order
                .domains
                .iter_mut()
                .filter(|d| domains.contains(&d.name))
            {
                d.validated_until = now.saturating_add(reuse);
            }
            for n in domains {
                if !order.domains.iter().any(|d| &d.name == n) {
                    let id = Self::next(&mut self.data.next_domain);
                    order.domains.push(Domain {
                        id,
                        name: n.clone(),
                        validated_until: now.saturating_add(reuse),
                    });
                }
            }
        }
        let still: Vec<(usize, bool)> = self
            .data
            .subs
            .iter()
            .enumerate()
            .filter(|(_, x)| x.order_id == order_id && x.awaiting_dcv)
            .map(|(i, x)| {
                let order = self.data.orders.get(&order_id);
                let left = order.map(|o| self.validated_names_left(o, &x.new.dns_names));
                (i, left.unwrap_or(true))
            })
            .collect();
        for (i, left) in still {
            if !left {
                self.data.subs[i].awaiting_dcv = false;
            }
        }
        self.dirty = true;
        self.tick();
    }

    /// Whether some of `names` still lack validation (DV orders: validated just now counts).
    fn validated_names_left(&self, order: &Order, names: &[String]) -> bool {
        let now = now_s();
        names.iter().any(|n| !covered(order, base_domain(n), now))
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

    pub(super) fn submit(&mut self, order_id: u64, kind: SubmitKind, new: NewSubmission) -> usize {
        let now = now_ms();
        let approve_at = if new.skip_approval {
            now
        } else {
            now.saturating_add(ms(self.cfg.approval_delay))
        };
        let mut cert_faults = Vec::new();
        while let Some(f) = self.take_fault(|k| {
            matches!(
                k,
                FaultKind::WrongKey
                    | FaultKind::MissingName
                    | FaultKind::Expired
                    | FaultKind::TruncatedPem
                    | FaultKind::BadChain
            )
        }) {
            cert_faults.push(f);
        }
        let awaiting_dcv = self
            .data
            .orders
            .get(&order_id)
            .is_some_and(|o| !self.unvalidated(o, &new.dns_names).is_empty());
        let sub_id = u32::try_from(
            self.data
                .subs
                .iter()
                .filter(|s| s.order_id == order_id && s.kind == SubmitKind::Duplicate)
                .count(),
        )
        .unwrap_or(u32::MAX)
        .saturating_add(1);
        let request_id = Self::next(&mut self.data.next_request);
        let cert_id = Self::next(&mut self.data.next_cert);
        self.data.subs.push(Submission {
            request_id,
            cert_id,
            order_id,
            kind,
            new,
            created: now_s(),
            approve_at,
            issue_at: None,
            status: SubStatus::Pending,
            awaiting_dcv,
            cert_faults,
            sub_id,
            processor_comment: None,
        });
        self.dirty = true;
        self.tick();
        self.data.subs.len() - 1
    }

    /// Moves every submission forward to where the clock says it is.
    pub(super) fn tick(&mut self) {
        let now = now_ms();
        for i in 0..self.data.subs.len() {
            let sub = &self.data.subs[i];
            match sub.status {
                SubStatus::Issued | SubStatus::Rejected => continue,
                SubStatus::Pending if now >= sub.approve_at => {
                    self.data.subs[i].status = SubStatus::Approved;
                    self.dirty = true;
                }
                _ => {}
            }
            let sub = &self.data.subs[i];
            if sub.status == SubStatus::Approved && !sub.awaiting_dcv {
                let issue_at = *self.data.subs[i]
                    .issue_at
                    .get_or_insert(now.saturating_add(ms(self.cfg.issuance_delay)));
                if now >= issue_at {
                    if let Err(e) = self.issue(i) {
                        tracing::error!(error = %e, "sandbox could not sign a certificate");
                        self.data.subs[i].status = SubStatus::Rejected;
                    }
                    self.dirty = true;
                }
            }
        }
    }

    fn issue(&mut self, i: usize) -> anyhow::Result<()> {
        let now = now_s();
        let sub = &self.data.subs[i];
        let faults = &sub.cert_faults;
        let order = self
            .data
            .orders
            .get(&sub.order_id)
            .ok_or_else(|| anyhow::anyhow!("no order {}", sub.order_id))?;
        let other_key;
        let spki: &[u8] = if faults.contains(&FaultKind::WrongKey) {
            other_key = rcgen::PublicKeyData::subject_public_key_info(
                &rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            );
            &other_key
        } else {
            &sub.new.spki
        };
        let mut names = sub.new.dns_names.clone();
        if faults.contains(&FaultKind::MissingName) && names.len() > 1 {
            names.pop();
        }
        let order_end = order_end(&order.valid_till);
        let (not_before, not_after) = if faults.contains(&FaultKind::Expired) {
            (now - 7200, now - 3600)
        } else {
            let end = match sub.kind {
                // A duplicate takes the order's current certificate's expiry (§2.2).
                SubmitKind::Duplicate => self
                    .data
                    .certs
                    .get(&order.current_cert)
                    .map_or(now, |c| c.not_after)
                    .max(now + 60),
                // `cert_validity` is honoured on Multi-year Plan reissues only; it is ignored
                // otherwise (the reissue page: "ignored for reissues that are not associated
                // with a Multi-year Plan").
                SubmitKind::Reissue | SubmitKind::New => {
                    let default = i64::try_from(self.cfg.validity.as_secs()).unwrap_or(i64::MAX);
                    let days = sub
                        .new
                        .validity_days
                        .filter(|_| order.multi_year_plan && sub.kind == SubmitKind::Reissue)
                        .and_then(|d| i64::try_from(d).ok())
                        .map_or(default, |d| d.saturating_mul(86_400));
                    now.saturating_add(days)
                }
            };
            // Nothing outlives the plan (certcentral-api.md §7).
            (now - 5, end.min(order_end))
        };
        let leaf = self.ca.issue(&LeafSpec {
            spki_der: spki,
            common_name: &sub.new.common_name,
            dns_names: &names,
            not_before,
            not_after,
            rogue: faults.contains(&FaultKind::BadChain),
        })?;
        let cert = Cert {
            id: sub.cert_id,
            order_id: sub.order_id,
            serial: leaf.serial,
            der: leaf.der,
            common_name: sub.new.common_name.clone(),
            dns_names: sub.new.dns_names.clone(),
            not_before,
            not_after,
            created: sub.created,
            csr: sub.new.csr_pem.clone(),
            truncated: faults.contains(&FaultKind::TruncatedPem),
            server_platform: sub.new.server_platform,
            signature_hash: sub.new.signature_hash.clone(),
            status: "issued".into(),
        };
        let (kind, order_id, cert_id) = (sub.kind, sub.order_id, sub.cert_id);
        self.data.certs.insert(cert_id, cert);
        self.data.subs[i].status = SubStatus::Issued;
        if let Some(o) = self.data.orders.get_mut(&order_id) {
            if matches!(kind, SubmitKind::Reissue | SubmitKind::New) {
                o.current_cert = cert_id;
                o.status = "issued".into();
            }
            // DV: no reuse, the next issuance validates again.
            if o.dv {
                for d in &mut o.domains {
                    d.validated_until = 0;
                }
            }
        }
        Ok(())
    }
}

/// Whether a validated domain of the order covers `base` (the domain itself or a parent: a
/// validated domain covers its subdomains).
fn covered(order: &Order, base: &str, now: i64) -> bool {
    order.domains.iter().any(|d| {
        d.validated_until > now
            && (base == d.name
                || base
                    .strip_suffix(&d.name)
                    .is_some_and(|rest| rest.ends_with('.')))
    })
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
