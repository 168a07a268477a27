//! `certkeeper status` and `check`: what each certificate looks like now, from the journals and
//! the files, whether or not the daemon runs. Reads only.

use serde::Serialize;

use crate::config::{Certificate, Config};
use crate::model::{fmt_time, unix_now};
use crate::renewal::{self, KeyCheck, Step};

/// One certificate's status. Field names are part of the `status --json` contract (README).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    /// `certcentral` or `acme:NAME`.
    pub issuer: String,
    /// The CertCentral order (for ACME: DigiCert's `orderId`, if any).
    pub order_id: Option<u64>,
    pub method: String,
    /// `ok`, `due`, `pending`, `downloading` (the CA has issued; the download is left),
    /// `renewing` or `failed`.
    pub state: &'static str,
    /// Why the certificate is due, or what a pending request waits for.
    pub detail: Option<String>,
    pub serial: Option<String>,
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
    pub key_age_days: Option<i64>,
    /// Where the key's age comes from: `time certkeeper generated it`, `certificate's
    /// notBefore` (a key certkeeper did not make) or `key file's mtime`.
    pub key_age_source: Option<&'static str>,
    /// The journal's step (`idle`, `key_ready`, `submitting`, `pending`, `validating`,
    /// `issued`, `installed`, `rolling_back`).
    pub step: &'static str,
    pub request_id: Option<u64>,
    pub pending_since: Option<String>,
    /// While names are being validated: how, which names, what is published, the CA's answer.
    pub validation: Option<ValidationRow>,
    /// A call being retried right now, with its error.
    pub retrying: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// What retrying can do for the last error: `transient`, `needs_person` or
    /// `needs_config_change`.
    pub retry_class: Option<&'static str>,
    pub failures: u32,
    pub last_success: Option<String>,
    pub next_check: Option<String>,
    /// The rule that set the renewal time (`renew_before`, `half-life cap`,
    /// `rotate_key_after`, `ari`, `safety net`).
    pub renewal_rule: Option<&'static str>,
    /// When the certificate becomes due by time.
    pub renew_at: Option<String>,
    /// A policy value that does not fit the installed certificate.
    pub note: Option<String>,
    /// Needs a person: blocked until the configuration changes, an error only a person can
    /// fix, five failures in a row, or a request pending for more than three days.
    pub stuck: bool,
}

/// A validation in progress.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationRow {
    /// `http-token`, `dns-txt-token`, `dns-cname-token`, `http-01` or `dns-01`.
    pub method: String,
    pub unvalidated: Vec<String>,
    /// What is published, and where.
    pub published: Vec<String>,
    pub last_answer: Option<String>,
    pub next_check: String,
}

/// The status of every configured certificate, in config order. Certificates are read on as
/// many threads as there are cores: each one is a few small file reads and parses. `status`
/// compares the public key written in key files ([`KeyCheck::Embedded`]); `check` derives it
/// ([`KeyCheck::Derived`]), so a corrupted private half shows there.
pub fn rows(config: &Config, keys: KeyCheck) -> Vec<Row> {
    let now = unix_now();
    let certs = &config.certificates;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(certs.len() / 64 + 1);
    if threads <= 1 {
        return certs.iter().map(|c| row(config, c, now, keys)).collect();
    }
    let chunk = certs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = certs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|c| row(config, c, now, keys))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn row(config: &Config, cert: &Certificate, now: i64, keys: KeyCheck) -> Row {
    let renewal::Observation {
        journal,
        journal_error,
        assessment,
        facts,
        key_age,
        retrying,
    } = renewal::observe(cert, &config.daemon, now, keys);
    let mut detail = assessment.due.as_ref().map(ToString::to_string);
    let mut next_check = Some(assessment.next_check);
    let (mut request_id, mut pending_since, mut validation) = (None, None, None);
    let failed = journal.last_error.is_some() && journal.retry_at.is_some();
    let method = match &cert.issuer {
        crate::config::Issuer::CertCentral { .. } => cert.validation.dcv_method.to_string(),
        crate::config::Issuer::Acme { challenge, .. } => challenge.to_string(),
    };
    // CertCentral has issued: nothing waits for it any more, only for the download.
    let downloading = journal.step.downloading();
    let download_failed = |id: u64, e: &str| {
        format!("CertCentral issued certificate {id}; downloading it failed: {e}")
    };
    let state = match &journal.step {
        _ if failed || journal_error.is_some() => {
            next_check = journal.retry_at.filter(|t| *t != i64::MAX);
            if let (Some(id), Some(e)) = (downloading, &journal.last_error) {
                detail = Some(download_failed(id, &e.message));
            } else if journal.step.request().is_some() {
                detail = Some(format!(
                    "while waiting for {}",
                    renewal::waiting_for(&journal.step)
                ));
            }
            "failed"
        }
        Step::Pending {
            request,
            since,
            next_poll,
            ..
        } if downloading.is_some() => {
            request_id = request.request_id();
            pending_since = Some(fmt_time(*since));
            next_check = Some(*next_poll);
            detail = downloading
                .map(|id| format!("CertCentral issued certificate {id}; downloading it"));
            "downloading"
        }
        Step::Pending {
            request,
            since,
            next_poll,
            ..
        } => {
            request_id = request.request_id();
            pending_since = Some(fmt_time(*since));
            next_check = Some(*next_poll);
            detail = Some(format!(
                "waiting for {}",
                renewal::waiting_for(&journal.step)
            ));
            "pending"
        }
        Step::Validating {
            request,
            validation: v,
            ..
        } => {
            request_id = request.request_id();
            pending_since = Some(fmt_time(v.since));
            next_check = Some(v.next_check);
            detail = Some(format!(
                "waiting for {}",
                renewal::waiting_for(&journal.step)
            ));
            validation = Some(ValidationRow {
                method,
                unvalidated: v.unvalidated.clone(),
                published: journal
                    .published
                    .iter()
                    .map(|p| p.what.describe())
                    .collect(),
                last_answer: v.last_answer.clone(),
                next_check: fmt_time(v.next_check),
            });
            "pending"
        }
        Step::Idle if assessment.due.is_some() => "due",
        Step::Idle => "ok",
        _ => "renewing",
    };
    // A call failing right now (in-call retries) is said first: the renewal is not simply
    // waiting.
    if let Some(r) = retrying.as_ref().filter(|_| state != "failed") {
        detail = Some(match (downloading, journal.step.request()) {
            (Some(id), _) => download_failed(id, &r.message),
            (None, Some(_)) => format!(
                "retrying after an error: {}; while waiting for {}",
                r.message,
                renewal::waiting_for(&journal.step)
            ),
            (None, None) => format!("retrying after an error in step {}: {}", r.step, r.message),
        });
    }
    if !journal.published.is_empty() && validation.is_none() {
        let left: Vec<String> = journal
            .published
            .iter()
            .map(|p| match &p.cleanup_error {
                Some(e) => format!("{} (cleanup failed: {e})", p.what.describe()),
                None => p.what.describe(),
            })
            .collect();
        detail = Some(format!(
            "{}; awaiting cleanup: {}",
            detail.unwrap_or_default(),
            left.join(", ")
        ));
    }
    let pending_long = journal.step.request().is_some()
        && pending_since_of(&journal.step)
            .is_some_and(|since| now - since > renewal::notify_stuck_pending_secs());
    Row {
        name: cert.name.to_string(),
        issuer: cert.issuer_label(),
        order_id: cert.order_id(),
        method: cert.method().to_string(),
        state,
        detail,
        serial: facts.as_ref().map(|f| f.serial.clone()),
        not_after: facts.as_ref().map(|f| fmt_time(f.not_after)),
        days_left: facts
            .as_ref()
            .map(|f| (f.not_after - now).div_euclid(86_400)),
        key_age_days: key_age.map(|(k, _)| now.saturating_sub(k).div_euclid(86_400)),
        key_age_source: key_age.map(|(_, s)| s.as_str()),
        step: journal.step.name(),
        request_id,
        pending_since,
        validation,
        retrying: retrying.map(|r| format!("{} step: {}", r.step, r.message)),
        last_error: journal_error
            .or_else(|| journal.last_error.as_ref().map(|e| e.message.clone())),
        last_error_at: journal.last_error.as_ref().map(|e| fmt_time(e.at)),
        retry_class: journal
            .last_error
            .as_ref()
            .and_then(|e| e.class)
            .map(renewal::RetryClass::as_str),
        failures: journal.failures,
        last_success: journal.last_success.map(fmt_time),
        next_check: next_check.map(fmt_time),
        renewal_rule: assessment.rule.map(|r| r.as_str()),
        renew_at: assessment.renew_at.map(fmt_time),
        note: assessment.note,
        stuck: journal.blocked.is_some()
            || journal
                .last_error
                .as_ref()
                .is_some_and(|e| e.class == Some(renewal::RetryClass::NeedsPerson))
            || journal.failures >= renewal::notify_stuck_failures()
            || pending_long,
    }
}

fn pending_since_of(step: &Step) -> Option<i64> {
    match step {
        Step::Pending { since, .. } => Some(*since),
        Step::Validating { validation, .. } => Some(validation.since),
        _ => None,
    }
}

/// The table `certkeeper status` prints.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<14} {:<9} {:<9} {:<20} {:>5} {:>7}  {:<20}  DETAIL",
        "NAME", "ISSUER/ORDER", "METHOD", "STATE", "NOT_AFTER", "DAYS", "KEY_AGE", "NEXT_CHECK"
    );
    for r in rows {
        let mut detail = match (&r.last_error, &r.detail) {
            // A detail that tells the error already (a failing download) stands alone.
            (Some(e), Some(d)) if r.state == "failed" && d.contains(e.as_str()) => d.clone(),
            (Some(e), Some(d)) if r.state == "failed" => format!("last error: {e} ({d})"),
            (Some(e), None) if r.state == "failed" => format!("last error: {e}"),
            (_, Some(d)) => d.clone(),
            _ => String::new(),
        };
        if let Some(v) = &r.validation {
            let _ = write!(detail, "; {}", v.method);
            if !v.published.is_empty() {
                let _ = write!(detail, "; published: {}", v.published.join(", "));
            }
        }
        if let Some(note) = &r.note {
            let _ = write!(detail, "; note: {note}");
        }
        let issuer = match (&r.order_id, r.issuer.as_str()) {
            (Some(o), "certcentral") => o.to_string(),
            (Some(o), i) => format!("{i}/{o}"),
            (None, i) => i.to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<14} {:<9} {:<9} {:<20} {:>5} {:>7}  {:<20}  {}{}",
            r.name,
            issuer,
            r.method,
            r.state,
            r.not_after.as_deref().unwrap_or("-"),
            r.days_left.map_or("-".into(), |d| d.to_string()),
            r.key_age_days.map_or("-".into(), |d| format!("{d}d")),
            r.next_check.as_deref().unwrap_or("-"),
            if r.stuck { "STUCK: " } else { "" },
            detail
        );
    }
    out
}
