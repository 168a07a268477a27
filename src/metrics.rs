//! Prometheus metrics (`[daemon] metrics_listen`), named after cert-manager's. Everything is
//! computed at scrape time from the journals, the files and the CertCentral client's counters,
//! so the numbers are the same ones `status` shows.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

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
    for cert in &config.certificates {
        let labels = format!("name=\"{}\",order_id=\"{}\"", cert.name, cert.order_id);
        let renewal::Observation {
            journal,
            assessment,
            facts,
            ..
        } = renewal::observe(cert, &config.daemon, now);
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
        if matches!(journal.step, Step::Pending { .. }) {
            pending += 1;
        }
    }
    let mut requests = String::new();
    for ((endpoint, status), n) in crate::certcentral::request_counts() {
        let _ = writeln!(
            requests,
            "certkeeper_certcentral_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
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
        "certkeeper_pending_requests",
        "gauge",
        "Requests waiting at CertCentral for approval or issuance.",
        &format!("certkeeper_pending_requests {pending}\n"),
    );
    family(
        "certkeeper_order_expiration_timestamp_seconds",
        "gauge",
        "The end of the CertCentral order (order_valid_till), in unix seconds.",
        &order_end,
    );
    out
}

/// Binds `addr` (so a bad address fails the start) and serves `/metrics` from a task, with the
/// latest configuration.
pub async fn start(addr: SocketAddr, config: watch::Receiver<Arc<Config>>) -> std::io::Result<()> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let config = config.borrow().clone();
            async move {
                let body = tokio::task::spawn_blocking(move || render(&config))
                    .await
                    .unwrap_or_default();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    body,
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint failed");
        }
    });
    Ok(())
}
