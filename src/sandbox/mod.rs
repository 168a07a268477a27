//! `certkeeper sandbox`: a local CertCentral-compatible CA.
//!
//! It serves, under `/services/v2`, the endpoints certkeeper uses, with the paths, JSON shapes,
//! status codes and error envelope of certcentral-api.md, and issues real certificates for the
//! CSR's key, signed by a sandbox intermediate under a sandbox root. It can be told its orders,
//! the validity of what it issues, approval and issuance delays, and faults to inject.
//!
//! It deliberately shares no request/response types or parsing with [`crate::certcentral`]:
//! each side follows the API document on its own, so they cannot agree on a mistake.

mod ca;
mod faults;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use ca::{Ca, LeafSpec};
pub use faults::{Fault, FaultKind};

/// An order the sandbox knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSpec {
    pub id: u64,
    pub common_name: String,
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Order status; `issued` unless told otherwise (e.g. `expired`, `revoked`).
    #[serde(default = "issued")]
    pub status: String,
    /// `yyyy-MM-dd`; default one year from now.
    pub order_valid_till: Option<String>,
    #[serde(default = "yes")]
    pub allow_duplicates: bool,
    #[serde(default)]
    pub auto_reissue: bool,
    /// List the free `www.`/base companion of the common name among the order's names, but
    /// refuse it on duplicates (`invalid_dns_name_on_duplicate`), as some products do.
    #[serde(default)]
    pub auto_companion: bool,
}

fn issued() -> String {
    "issued".into()
}
fn yes() -> bool {
    true
}

impl FromStr for OrderSpec {
    type Err = String;
    /// `ID:COMMON_NAME[,SAN…]`, e.g. `1001:example.test,www.example.test`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (id, names) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid order {s:?}; write ID:COMMON_NAME[,SAN…]"))?;
        let id = id
            .parse()
            .map_err(|_| format!("invalid order id in {s:?}"))?;
        let mut names = names.split(',').map(|n| n.trim().to_ascii_lowercase());
        let common_name = names
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("order {s:?} lacks a common name"))?;
        let mut dns_names = vec![common_name.clone()];
        dns_names.extend(names.filter(|n| !n.is_empty()));
        Ok(Self {
            id,
            common_name,
            dns_names,
            status: issued(),
            order_valid_till: None,
            allow_duplicates: true,
            auto_reissue: false,
            auto_companion: false,
        })
    }
}

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub orders: Vec<OrderSpec>,
    /// Lifetime of issued certificates.
    pub validity: Duration,
    /// Time until a request without `skip_approval` is approved.
    pub approval_delay: Duration,
    /// Time from approval to issuance.
    pub issuance_delay: Duration,
    /// When set, `X-DC-DEVKEY` must equal it; otherwise any non-empty key is accepted.
    pub api_key: Option<String>,
    pub faults: Vec<Fault>,
    /// Enforce CertCentral's published limits per API key: 100 requests per 5 s and 1000 per
    /// 3 min, rolling; beyond them every request gets `429 request_limit_exceeded`.
    pub rate_limits: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            orders: Vec::new(),
            validity: Duration::from_secs(90 * 86_400),
            approval_delay: Duration::ZERO,
            issuance_delay: Duration::ZERO,
            api_key: None,
            faults: Vec::new(),
            rate_limits: false,
        }
    }
}

/// One API call the sandbox answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    state: Shared,
    stop: Option<oneshot::Sender<()>>,
}

type Shared = Arc<Mutex<State>>;

impl Sandbox {
    /// Starts serving on `listen` (use port 0 for a free port).
    pub async fn start(listen: SocketAddr, config: SandboxConfig) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State::new(config)?));
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = routes::router(state.clone());
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "sandbox server failed");
            }
        });
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to put in `[certcentral] url`.
    pub fn url(&self) -> String {
        format!("http://{}/services/v2", self.addr)
    }

    /// The sandbox root certificate (PEM), to verify issued chains with.
    pub fn root_pem(&self) -> String {
        self.lock().ca.root_pem.clone()
    }

    /// Every API call answered so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    /// How many calls matched `method` and a path ending in `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .count()
    }

    /// Adds a fault to inject.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Adds an order.
    pub fn add_order(&self, spec: &OrderSpec) -> anyhow::Result<()> {
        self.lock().add_order(spec)
    }

    /// Sets an order's status, as a person in the console or the passage of time would.
    pub fn set_order_status(&self, order_id: u64, status: &str) {
        if let Some(o) = self.lock().orders.get_mut(&order_id) {
            o.status = status.to_owned();
        }
    }

    /// Starts a reissue on the order with a key certkeeper does not hold (DigiCert's
    /// auto-reissue, or a person in the console).
    pub fn start_foreign_reissue(&self, order_id: u64) -> anyhow::Result<()> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut s = self.lock();
        let order = s
            .orders
            .get(&order_id)
            .ok_or_else(|| anyhow::anyhow!("no order {order_id}"))?;
        let (cn, names) = (order.common_name.clone(), order.dns_names.clone());
        let csr = crate::crypto::csr(&key, &cn, &names)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        // Approved at once, then waiting in issuance: the order shows reissue_pending.
        let issuance =
            std::mem::replace(&mut s.cfg.issuance_delay, Duration::from_secs(365 * 86_400));
        s.submit(
            order_id,
            SubmitKind::Reissue,
            NewSubmission {
                validity_days: None,
                csr_pem: csr,
                spki,
                common_name: cn,
                dns_names: names,
                skip_approval: true,
                server_platform: -1,
                signature_hash: "sha256".into(),
            },
        );
        s.cfg.issuance_delay = issuance;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent data behind (each mutation is one
    // statement group); keep serving.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubmitKind {
    Reissue,
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubStatus {
    Pending,
    Approved,
    Issued,
    Rejected,
}

struct Order {
    id: u64,
    common_name: String,
    dns_names: Vec<String>,
    status: String,
    valid_till: time::Date,
    allow_duplicates: bool,
    auto_reissue: bool,
    /// Shown in order info, refused on duplicates.
    companion: Option<String>,
    current_cert: u64,
    created: OffsetDateTime,
}

struct Cert {
    id: u64,
    serial: String,
    leaf_pem: String,
    common_name: String,
    dns_names: Vec<String>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    created: OffsetDateTime,
    csr: String,
    truncated: bool,
    server_platform: i64,
    signature_hash: String,
}

impl Cert {
    /// The leaf PEM as served: cut in half under the `truncated-pem` fault.
    fn served_leaf(&self) -> String {
        let mut pem = self.leaf_pem.clone();
        if self.truncated {
            pem.truncate(pem.len() / 2);
        }
        pem
    }
}

struct NewSubmission {
    /// `certificate.cert_validity.days`, if asked.
    validity_days: Option<u64>,
    csr_pem: String,
    spki: Vec<u8>,
    common_name: String,
    dns_names: Vec<String>,
    skip_approval: bool,
    server_platform: i64,
    signature_hash: String,
}

struct Submission {
    request_id: u64,
    cert_id: u64,
    order_id: u64,
    kind: SubmitKind,
    new: NewSubmission,
    created: OffsetDateTime,
    approve_at: Instant,
    issue_at: Instant,
    status: SubStatus,
    cert_faults: Vec<FaultKind>,
    sub_id: u32,
}

struct State {
    ca: Ca,
    cfg: SandboxConfig,
    orders: BTreeMap<u64, Order>,
    certs: HashMap<u64, Cert>,
    subs: Vec<Submission>,
    next_id: u64,
    faults: Vec<Fault>,
    log: Vec<RequestRecord>,
    /// Accepted requests per API key, for the rate limits.
    recent: HashMap<String, std::collections::VecDeque<Instant>>,
}

impl State {
    fn new(mut cfg: SandboxConfig) -> anyhow::Result<Self> {
        let mut s = Self {
            ca: Ca::new()?,
            faults: std::mem::take(&mut cfg.faults),
            orders: BTreeMap::new(),
            certs: HashMap::new(),
            subs: Vec::new(),
            next_id: 1000,
            log: Vec::new(),
            recent: HashMap::new(),
            cfg,
        };
        for spec in s.cfg.orders.clone() {
            s.add_order(&spec)?;
        }
        Ok(s)
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Creates an order with a primary certificate for a key nobody outside holds.
    fn add_order(&mut self, spec: &OrderSpec) -> anyhow::Result<()> {
        let now = OffsetDateTime::now_utc();
        let valid_till = match &spec.order_valid_till {
            Some(d) => {
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .map_err(|e| {
                        anyhow::anyhow!("order {}: invalid order_valid_till {d:?}: {e}", spec.id)
                    })?
            }
            None => (now + Duration::from_secs(365 * 86_400)).date(),
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let cn = spec.common_name.to_ascii_lowercase();
        let mut names: Vec<String> = spec
            .dns_names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        if !names.contains(&cn) {
            names.insert(0, cn.clone());
        }
        let cert_id = self.id();
        let leaf = self.ca.issue(&LeafSpec {
            spki_der: &spki,
            common_name: &cn,
            dns_names: &names,
            not_before: now - Duration::from_secs(5),
            not_after: now + self.cfg.validity,
            rogue: false,
        })?;
        self.certs.insert(
            cert_id,
            Cert {
                id: cert_id,
                serial: leaf.serial,
                leaf_pem: leaf.pem,
                common_name: cn.clone(),
                dns_names: names.clone(),
                not_before: now - Duration::from_secs(5),
                not_after: now + self.cfg.validity,
                created: now,
                csr: String::new(),
                truncated: false,
                server_platform: 45,
                signature_hash: "sha256".into(),
            },
        );
        self.orders.insert(
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
            },
        );
        Ok(())
    }

    /// Whether `key` is over CertCentral's limits; records the request if not.
    fn over_limit(&mut self, key: &str) -> bool {
        if !self.cfg.rate_limits {
            return false;
        }
        let now = Instant::now();
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
    fn take_transport_fault(&mut self) -> Option<FaultKind> {
        let f = self
            .faults
            .iter_mut()
            .find(|f| f.count > 0 && f.kind.is_transport())?;
        f.count -= 1;
        Some(f.kind.clone())
    }

    /// Takes every pending fault of `kind`'s family that shapes a submission.
    fn take_fault(&mut self, pred: impl Fn(&FaultKind) -> bool) -> Option<FaultKind> {
        let f = self
            .faults
            .iter_mut()
            .find(|f| f.count > 0 && pred(&f.kind))?;
        f.count -= 1;
        Some(f.kind.clone())
    }

    fn submit(&mut self, order_id: u64, kind: SubmitKind, new: NewSubmission) -> usize {
        let now = Instant::now();
        let approve_at = if new.skip_approval {
            now
        } else {
            now + self.cfg.approval_delay
        };
        let issue_at = approve_at + self.cfg.issuance_delay;
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
        let sub_id = self
            .subs
            .iter()
            .filter(|s| s.order_id == order_id && s.kind == SubmitKind::Duplicate)
            .count() as u32
            + 1;
        let (request_id, cert_id) = (self.id(), self.id());
        self.subs.push(Submission {
            request_id,
            cert_id,
            order_id,
            kind,
            new,
            created: OffsetDateTime::now_utc(),
            approve_at,
            issue_at,
            status: SubStatus::Pending,
            cert_faults,
            sub_id,
        });
        self.tick();
        self.subs.len() - 1
    }

    /// Moves every submission forward to where the clock says it is.
    fn tick(&mut self) {
        let now = Instant::now();
        for i in 0..self.subs.len() {
            let sub = &self.subs[i];
            match sub.status {
                SubStatus::Issued | SubStatus::Rejected => continue,
                _ if now >= sub.issue_at => {
                    if let Err(e) = self.issue(i) {
                        tracing::error!(error = %e, "sandbox could not sign a certificate");
                        self.subs[i].status = SubStatus::Rejected;
                    }
                }
                SubStatus::Pending if now >= sub.approve_at => {
                    let (kind, oid) = (sub.kind, sub.order_id);
                    self.subs[i].status = SubStatus::Approved;
                    if kind == SubmitKind::Reissue
                        && let Some(o) = self.orders.get_mut(&oid)
                    {
                        o.status = "reissue_pending".into();
                    }
                }
                _ => {}
            }
        }
    }

    fn issue(&mut self, i: usize) -> anyhow::Result<()> {
        let now = OffsetDateTime::now_utc();
        let sub = &self.subs[i];
        let faults = &sub.cert_faults;
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
        let (not_before, not_after) = if faults.contains(&FaultKind::Expired) {
            (
                now - Duration::from_secs(7200),
                now - Duration::from_secs(3600),
            )
        } else {
            // A duplicate takes the order's current certificate's expiry (certcentral-api.md §2.2).
            let end = match sub.kind {
                SubmitKind::Duplicate => self
                    .orders
                    .get(&sub.order_id)
                    .and_then(|o| self.certs.get(&o.current_cert))
                    .map_or(now + self.cfg.validity, |c| {
                        c.not_after.max(now + Duration::from_secs(60))
                    }),
                SubmitKind::Reissue => {
                    now + sub
                        .new
                        .validity_days
                        .map_or(self.cfg.validity, |d| Duration::from_secs(d * 86_400))
                }
            };
            (now - Duration::from_secs(5), end)
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
            serial: leaf.serial,
            leaf_pem: leaf.pem,
            common_name: sub.new.common_name.clone(),
            dns_names: sub.new.dns_names.clone(),
            not_before,
            not_after,
            created: sub.created,
            csr: sub.new.csr_pem.clone(),
            truncated: faults.contains(&FaultKind::TruncatedPem),
            server_platform: sub.new.server_platform,
            signature_hash: sub.new.signature_hash.clone(),
        };
        let (kind, order_id, cert_id) = (sub.kind, sub.order_id, sub.cert_id);
        self.certs.insert(cert_id, cert);
        self.subs[i].status = SubStatus::Issued;
        if kind == SubmitKind::Reissue
            && let Some(o) = self.orders.get_mut(&order_id)
        {
            o.current_cert = cert_id;
            o.status = "issued".into();
        }
        Ok(())
    }
}
