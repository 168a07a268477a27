//! `certkeeper status` and `check`: what each certificate looks like now, from the journals and
//! the files, whether or not the daemon runs. Reads only.

use serde::Serialize;

use crate::config::{Certificate, Config};
use crate::model::{fmt_time, unix_now};
use crate::renewal::{self, Step};

/// One certificate's status. Field names are part of the `status --json` contract (README).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub order_id: u64,
    pub method: String,
    /// `ok`, `due`, `pending`, `renewing` or `failed`.
    pub state: &'static str,
    /// Why the certificate is due, or what a pending request waits for.
    pub detail: Option<String>,
    pub serial: Option<String>,
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
    pub key_age_days: Option<i64>,
    /// The journal's step (`idle`, `key_ready`, `submitting`, `pending`, `issued`, `installed`).
    pub step: &'static str,
    pub request_id: Option<u64>,
    pub pending_since: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub failures: u32,
    pub last_success: Option<String>,
    pub next_check: Option<String>,
    /// Needs a person: the order ended, five failures in a row, or pending for over 3 days.
    pub stuck: bool,
}

/// The status of every configured certificate, in config order. Certificates are read on as
/// many threads as there are cores: each one is a few small file reads and parses.
pub fn rows(config: &Config) -> Vec<Row> {
    let now = unix_now();
    let certs = &config.certificates;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(certs.len() / 64 + 1);
    if threads <= 1 {
        return certs.iter().map(|c| row(config, c, now)).collect();
    }
    let chunk = certs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = certs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || part.iter().map(|c| row(config, c, now)).collect::<Vec<_>>())
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn row(config: &Config, cert: &Certificate, now: i64) -> Row {
    let renewal::Observation {
        journal,
        journal_error,
        assessment,
        facts,
    } = renewal::observe(cert, &config.daemon, now);
    let mut detail = assessment.due.as_ref().map(ToString::to_string);
    let mut next_check = Some(assessment.next_check);
    let (mut request_id, mut pending_since) = (None, None);
    let failed = journal.last_error.is_some() && journal.retry_at.is_some();
    let state = match &journal.step {
        Step::Pending {
            request_id: r,
            since,
            next_poll,
            ..
        } => {
            request_id = *r;
            pending_since = Some(fmt_time(*since));
            next_check = Some(*next_poll);
            detail = Some(format!(
                "waiting for {}",
                renewal::waiting_for(&journal.step)
            ));
            "pending"
        }
        _ if failed || journal_error.is_some() => {
            next_check = journal.retry_at.filter(|t| *t != i64::MAX);
            "failed"
        }
        Step::Idle if assessment.due.is_some() => "due",
        Step::Idle => "ok",
        _ => "renewing",
    };
    let pending_long =
        matches!(journal.step, Step::Pending { since, .. } if now - since > 3 * 86_400);
    Row {
        name: cert.name.to_string(),
        order_id: cert.order_id,
        method: cert.method.to_string(),
        state,
        detail,
        serial: facts.as_ref().map(|f| f.serial.clone()),
        not_after: facts.as_ref().map(|f| fmt_time(f.not_after)),
        days_left: facts
            .as_ref()
            .map(|f| (f.not_after - now).div_euclid(86_400)),
        key_age_days: facts
            .as_ref()
            .and(journal.key_created)
            .map(|k| (now - k) / 86_400),
        step: journal.step.name(),
        request_id,
        pending_since,
        last_error: journal_error
            .or_else(|| journal.last_error.as_ref().map(|e| e.message.clone())),
        last_error_at: journal.last_error.as_ref().map(|e| fmt_time(e.at)),
        failures: journal.failures,
        last_success: journal.last_success.map(fmt_time),
        next_check: next_check.map(fmt_time),
        stuck: journal.blocked.is_some() || journal.failures >= 5 || pending_long,
    }
}

/// The table `certkeeper status` prints.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>10} {:<9} {:<9} {:<20} {:>5} {:>7}  {:<20}  DETAIL",
        "NAME", "ORDER", "METHOD", "STATE", "NOT_AFTER", "DAYS", "KEY_AGE", "NEXT_CHECK"
    );
    for r in rows {
        let detail = match (&r.last_error, &r.detail) {
            (Some(e), _) if r.state == "failed" => format!("last error: {e}"),
            (_, Some(d)) => d.clone(),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:<9} {:<9} {:<20} {:>5} {:>7}  {:<20}  {}{}",
            r.name,
            r.order_id,
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
