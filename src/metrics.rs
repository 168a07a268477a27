//! Prometheus metrics (`[daemon] metrics_listen`), named after cert-manager's. Everything is
//! computed at scrape time from the journals, the files and the CertCentral client's counters,
//! so the numbers are the same ones `status` shows.

use std::collections::VecDeque;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::model::unix_now;
use crate::renewal::{self, Step};

/// The text exposition of every metric.
pub fn render(config: &Config) -> String {
    let now = unix_now();
    let mut expiry = String::new();
    let mut renewal_at = String::new();
    let mut ready = String::new();
    let mut failures = String::new();
    let mut order_end = String::new();
    let mut pending = 0;
    let mut validating = 0;
    for cert in &config.certificates {
        let labels = format!(
            "name=\"{}\",order_id=\"{}\",issuer=\"{}\"",
            cert.name,
            cert.order_id().map(|o| o.to_string()).unwrap_or_default(),
            cert.issuer_label()
        );
        let renewal::Observation {
            journal,
            assessment,
            facts,
            ..
        } = renewal::observe(cert, &config.daemon, now, renewal::KeyCheck::Embedded);
        if let Some(f) = &facts {
            let _ = writeln!(
                expiry,
                "certkeeper_certificate_expiration_timestamp_seconds{{{labels}}} {}",
                f.not_after
            );
        }
        if let Some(at) = assessment.renew_at {
            let _ = writeln!(
                renewal_at,
                "certkeeper_certificate_renewal_timestamp_seconds{{{labels}}} {at}"
            );
        }
        let is_ready = facts.as_ref().is_some_and(|f| now < f.not_after)
            && !matches!(
                assessment.due,
                Some(
                    crate::scheduler::DueReason::KeyMismatch
                        | crate::scheduler::DueReason::Missing(_)
                )
            )
            && journal.last_error.is_none();
        for (condition, value) in [("True", is_ready), ("False", !is_ready)] {
            let _ = writeln!(
                ready,
                "certkeeper_certificate_ready_status{{{labels},condition=\"{condition}\"}} {}",
                u8::from(value)
            );
        }
        let _ = writeln!(
            failures,
            "certkeeper_renewal_failures_total{{{labels}}} {}",
            journal.failures_total
        );
        if let Some(end) = journal
            .order_valid_till
            .as_deref()
            .and_then(renewal::end_of_day)
        {
            let _ = writeln!(
                order_end,
                "certkeeper_order_expiration_timestamp_seconds{{{labels}}} {end}"
            );
        }
        match journal.step {
            Step::Pending { .. } => pending += 1,
            Step::Validating { .. } => {
                pending += 1;
                validating += 1;
            }
            _ => {}
        }
    }
    let (mut requests, mut acme_requests) = (String::new(), String::new());
    for ((endpoint, status), n) in crate::certcentral::request_counts() {
        let _ = writeln!(
            requests,
            "certkeeper_certcentral_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
        );
    }
    for ((host, method, status), n) in crate::acme::request_counts() {
        let _ = writeln!(
            acme_requests,
            "certkeeper_acme_requests_total{{host=\"{host}\",method=\"{method}\",status=\"{status}\"}} {n}"
        );
    }
    let mut dcv = String::new();
    for (result, n) in DCV_CHECKS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(
            dcv,
            "certkeeper_dcv_checks_total{{result=\"{result}\"}} {n}"
        );
    }
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, body: &str| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{body}");
    };
    family(
        "certkeeper_certificate_expiration_timestamp_seconds",
        "gauge",
        "The date after which the installed certificate expires (not_after), in unix seconds.",
        &expiry,
    );
    family(
        "certkeeper_certificate_renewal_timestamp_seconds",
        "gauge",
        "When the certificate is due for renewal, in unix seconds.",
        &renewal_at,
    );
    family(
        "certkeeper_certificate_ready_status",
        "gauge",
        "Whether a valid certificate matching its key is installed and the last renewal did not fail.",
        &ready,
    );
    family(
        "certkeeper_renewal_failures_total",
        "counter",
        "Renewal attempts that failed.",
        &failures,
    );
    family(
        "certkeeper_certcentral_requests_total",
        "counter",
        "Requests sent to CertCentral by this process, by endpoint and HTTP status (0: no answer).",
        &requests,
    );
    family(
        "certkeeper_acme_requests_total",
        "counter",
        "Requests sent to ACME CAs by this process, by host, method and HTTP status (0: no answer).",
        &acme_requests,
    );
    family(
        "certkeeper_pending_requests",
        "gauge",
        "Requests waiting at the CA for approval, validation or issuance.",
        &format!("certkeeper_pending_requests {pending}\n"),
    );
    family(
        "certkeeper_validations_in_progress",
        "gauge",
        "Certificates whose names are being validated (DCV or ACME challenges).",
        &format!("certkeeper_validations_in_progress {validating}\n"),
    );
    family(
        "certkeeper_dcv_checks_total",
        "counter",
        "DCV checks asked of CertCentral by this process, by result (valid, not_yet, error).",
        &dcv,
    );
    family(
        "certkeeper_order_expiration_timestamp_seconds",
        "gauge",
        "The end of the CertCentral order (order_valid_till), in unix seconds.",
        &order_end,
    );
    out
}

/// DCV checks asked of CertCentral by this process, by result.
static DCV_CHECKS: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Counts one DCV check: `valid`, `not_yet` or `error`.
pub fn count_dcv_check(result: &'static str) {
    *DCV_CHECKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(result)
        .or_default() += 1;
}

/// Connections held at once. At the cap, the oldest connection that has not yet sent its
/// request is dropped for the new one, so clients holding idle connections cannot starve a
/// scraper, and the daemon's file descriptors stay bounded.
pub const MAX_CONNECTIONS: usize = 16;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection lives at most this long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection being served: whether its request has arrived, and how to drop it.
struct Held {
    asked: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// Binds `addr` (so a bad address fails the start) and serves `/metrics` from a task, with the
/// latest configuration: at most [`MAX_CONNECTIONS`] connections, one request each, headers
/// within 2 s, 10 s in all.
pub async fn start(addr: SocketAddr, config: watch::Receiver<Arc<Config>>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
    tokio::spawn(async move {
        let mut held: VecDeque<Held> = VecDeque::with_capacity(MAX_CONNECTIONS);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "the metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            held.retain(|h| !h.task.is_finished());
            if held.len() >= MAX_CONNECTIONS {
                match held.iter().position(|h| !h.asked.load(Ordering::Acquire)) {
                    Some(oldest_idle) => {
                        if let Some(h) = held.remove(oldest_idle) {
                            h.task.abort();
                        }
                    }
                    // Every held connection is being answered: this one waits for none.
                    None => continue,
                }
            }
            let asked = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(serve(stream, config.clone(), asked.clone()));
            held.push_back(Held {
                asked,
                task: task.abort_handle(),
            });
            // Let the new connection read its request before the next one may push it out.
            tokio::task::yield_now().await;
        }
    });
    Ok(())
}

/// One connection: one request, then closed.
async fn serve(
    stream: tokio::net::TcpStream,
    config: watch::Receiver<Arc<Config>>,
    asked: Arc<AtomicBool>,
) {
    let service = hyper::service::service_fn(move |req| {
        asked.store(true, Ordering::Release);
        let config = config.borrow().clone();
        async move { Ok::<_, std::convert::Infallible>(respond(&req, config).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
}

async fn respond(
    req: &hyper::Request<hyper::body::Incoming>,
    config: Arc<Config>,
) -> hyper::Response<axum::body::Body> {
    let mut resp = hyper::Response::new(axum::body::Body::empty());
    if req.uri().path() != "/metrics" {
        *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
        return resp;
    }
    let body = tokio::task::spawn_blocking(move || render(&config))
        .await
        .unwrap_or_default();
    *resp.body_mut() = axum::body::Body::from(body);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
