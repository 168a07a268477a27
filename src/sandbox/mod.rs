//! `certkeeper sandbox`: a local CertCentral-compatible CA that other people's clients can
//! trust.
//!
//! It serves, under `/services/v2`, the CertCentral endpoints that certkeeper and other
//! CertCentral clients use, with the paths, JSON shapes, status codes and error envelope of
//! DigiCert's documentation (certcentral-api.md, dcv.md), and issues real certificates for the
//! CSR's key, signed by a sandbox intermediate under a sandbox root. It validates domains for
//! real (it fetches the validation file and queries DNS). It can be told its orders, the
//! validity of what it issues, approval and issuance delays, faults to inject, and a folder to
//! keep its CA and orders in across restarts (`--state`).
//!
//! It deliberately shares no request/response types or parsing with [`crate::certcentral`] or
//! [`crate::validation`]: each side follows the documents on its own, so they cannot agree on a
//! mistake. Where the documents do not say, the sandbox's choice is marked "invented" in the
//! code.
//!
//! - [`state`]: orders, certificates, requests, domain validation, the clock;
//! - [`routes`]: the HTTP face;
//! - [`dcv`]: the sandbox's own validation checks;
//! - [`ca`]: root, intermediate, leaves;
//! - [`faults`]: what can be injected.

mod ca;
pub mod dcv;
mod faults;
mod routes;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::oneshot;

use ca::Ca;
pub use dcv::Reach;
pub use faults::{Fault, FaultKind};
pub use routes::ORGANIZATION_ID;
pub use state::RequestRecord;
use state::{NewSubmission, State, SubmitKind};

/// An order the sandbox knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSpec {
    pub id: u64,
    pub common_name: String,
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Order status; `issued` unless told otherwise (e.g. `expired`, `revoked`, `pending`).
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
    /// A Multi-year Plan order (`is_multi_year_plan: "1"`): only those honour
    /// `cert_validity` on reissues.
    #[serde(default)]
    pub multi_year_plan: bool,
    /// A DV order: no validation is reused; every issuance needs fresh DCV.
    #[serde(default)]
    pub dv: bool,
    /// `yyyy-MM-dd` until which the order's domains are validated (OV); default: the reuse
    /// period from now.
    pub validated_until: Option<String>,
    /// The order's DCV method (default `email`).
    pub dcv_method: Option<String>,
    /// The product's `name_id` (default `ssl_plus`, or `ssl_dv_geotrust` for DV).
    pub product: Option<String>,
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
            multi_year_plan: false,
            dv: false,
            validated_until: None,
            dcv_method: None,
            product: None,
        })
    }
}

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub orders: Vec<OrderSpec>,
    /// Lifetime of issued certificates (capped at the order's end).
    pub validity: Duration,
    /// Time until a request without `skip_approval` is approved.
    pub approval_delay: Duration,
    /// Time from approval (and validation) to issuance.
    pub issuance_delay: Duration,
    /// When set, `X-DC-DEVKEY` must equal it; otherwise any non-empty key is accepted.
    pub api_key: Option<String>,
    pub faults: Vec<Fault>,
    /// Enforce CertCentral's published limits per API key: 100 requests per 5 s and 1000 per
    /// 3 min, rolling; beyond them every request gets `429 request_limit_exceeded`.
    pub rate_limits: bool,
    /// Keep the CA, the orders and what was issued here, across restarts.
    pub state_dir: Option<PathBuf>,
    /// How names are reached for validation.
    pub reach: Reach,
    /// How often the sandbox checks pending validations by itself (DigiCert polls too);
    /// zero: only when asked (`check-dcv`).
    pub dcv_poll: Duration,
    /// How long a random value lasts (DigiCert: 30 days).
    pub dcv_value_lifetime: Duration,
    /// How long a validation is reused on OV orders (DigiCert: 199 days; DV: none).
    pub dcv_reuse: Duration,
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
            state_dir: None,
            reach: Reach::default(),
            dcv_poll: Duration::from_secs(60),
            dcv_value_lifetime: state::DEFAULT_VALUE_LIFETIME,
            dcv_reuse: state::DEFAULT_REUSE,
        }
    }
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    state: Shared,
    stop: Option<oneshot::Sender<()>>,
    poller: Option<tokio::task::AbortHandle>,
}

type Shared = Arc<Mutex<State>>;

impl Sandbox {
    /// Starts serving on `listen` (use port 0 for a free port).
    pub async fn start(listen: SocketAddr, config: SandboxConfig) -> anyhow::Result<Self> {
        let (ca, data) = match &config.state_dir {
            Some(dir) => (Ca::load_or_create(dir)?, load_data(dir)?),
            None => (Ca::new()?, None),
        };
        let state = Arc::new(Mutex::new(State::new(config, ca, data)?));
        save(&state);
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
        let poll = lock(&state).cfg.dcv_poll;
        let poller = (!poll.is_zero()).then(|| {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(poll).await;
                    routes::poll_validations(&state).await;
                }
            })
            .abort_handle()
        });
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            poller,
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
        let result = self.lock().add_order(spec);
        save(&self.state);
        result
    }

    /// Sets an order's status, as a person in the console or the passage of time would.
    pub fn set_order_status(&self, order_id: u64, status: &str) {
        if let Some(o) = self.lock().data.orders.get_mut(&order_id) {
            o.status = status.to_owned();
        }
        save(&self.state);
    }

    /// Ends the reuse of the order's domain validations (as if it lapsed).
    pub fn expire_validation(&self, order_id: u64) {
        if let Some(o) = self.lock().data.orders.get_mut(&order_id) {
            for d in &mut o.domains {
                d.validated_until = 0;
            }
        }
        save(&self.state);
    }

    /// The order's current random value, if it has one.
    pub fn random_value(&self, order_id: u64) -> Option<String> {
        self.lock()
            .data
            .orders
            .get(&order_id)
            .and_then(|o| o.random_value.as_ref())
            .map(|v| v.value.clone())
    }

    /// Starts a reissue on the order with a key certkeeper does not hold (DigiCert's
    /// auto-reissue, or a person in the console): approved and waiting for issuance, or, with
    /// `awaiting_approval`, waiting for an approver.
    pub fn start_foreign_reissue(
        &self,
        order_id: u64,
        awaiting_approval: bool,
    ) -> anyhow::Result<()> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut s = self.lock();
        let order = s
            .data
            .orders
            .get(&order_id)
            .ok_or_else(|| anyhow::anyhow!("no order {order_id}"))?;
        let (cn, names) = (order.common_name.clone(), order.dns_names.clone());
        let csr = crate::crypto::csr(&key, &cn, &names)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let (approval, issuance) = (s.cfg.approval_delay, s.cfg.issuance_delay);
        let year = Duration::from_secs(365 * 86_400);
        if awaiting_approval {
            s.cfg.approval_delay = year;
        } else {
            s.cfg.issuance_delay = year;
        }
        s.submit(
            order_id,
            SubmitKind::Reissue,
            NewSubmission {
                validity_days: None,
                csr_pem: csr,
                spki,
                common_name: cn,
                dns_names: names,
                skip_approval: !awaiting_approval,
                server_platform: -1,
                signature_hash: "sha256".into(),
            },
        );
        s.cfg.approval_delay = approval;
        s.cfg.issuance_delay = issuance;
        drop(s);
        save(&self.state);
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
        if let Some(p) = &self.poller {
            p.abort();
        }
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent data behind (each mutation is one
    // statement group); keep serving.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

const DATA_FILE: &str = "sandbox.json";

fn load_data(dir: &std::path::Path) -> anyhow::Result<Option<state::Data>> {
    match crate::safefs::read(&dir.join(DATA_FILE), 256 * 1024 * 1024) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the state to `--state DIR` if it changed (atomically).
fn save(state: &Shared) {
    let mut s = lock(state);
    let Some(dir) = s.cfg.state_dir.clone() else {
        return;
    };
    if !s.dirty {
        return;
    }
    let written = serde_json::to_vec(&s.data)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            crate::safefs::Dir::open(&dir, &crate::safefs::Trust::default())?.write_atomic(
                DATA_FILE,
                &bytes,
                &crate::safefs::Spec::mode(0o600),
            )
        });
    match written {
        Ok(()) => s.dirty = false,
        Err(e) => {
            tracing::error!(error = %e, dir = %dir.display(), "the sandbox cannot save its state")
        }
    }
}
