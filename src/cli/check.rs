//! `certkeeper check [--online]`: validates the configuration and what it points at, says per
//! certificate what the daemon would do now and why; `--online` also asks the CAs, read-only.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, ConfigError, DnsPublisher, Issuer};
use crate::model::{Method, unix_now};
use crate::renewal::Engine;
use crate::status;

pub(super) async fn run(path: &Path, online: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    // Without CertCentral certificates (a fresh install, or ACME only) no key is needed.
    if config.uses_certcentral() || (online && config.certificates.is_empty()) {
        config.certcentral.api_key(&config.path)?;
    }
    let (errors, warnings) = environment(&config);
    if let Some(first) = errors.first() {
        for e in &errors[1..] {
            eprintln!("certkeeper: {e}");
        }
        return Err(first.clone().into());
    }
    println!(
        "{}: valid; {} certificate(s); CertCentral at {}",
        path.display(),
        config.certificates.len(),
        config.certcentral.url
    );
    for w in &warnings {
        println!("  warning: {w}");
    }
    for row in status::rows(&config, crate::renewal::KeyCheck::Derived) {
        let what = match row.state {
            "ok" => format!(
                "ok until {}; next check {} ({})",
                row.not_after.as_deref().unwrap_or("?"),
                row.next_check.as_deref().unwrap_or("?"),
                row.renewal_rule.unwrap_or("renew_before")
            ),
            "due" => format!(
                "would renew now: {}",
                row.detail.as_deref().unwrap_or("due")
            ),
            "pending" => format!(
                "would poll the CA: {}",
                row.detail.as_deref().unwrap_or("pending")
            ),
            "downloading" => format!(
                "would download: {}",
                row.detail.as_deref().unwrap_or("the issued certificate")
            ),
            "renewing" => format!("would resume the renewal at step {}", row.step),
            _ => format!(
                "would retry from {}: {}",
                row.next_check
                    .as_deref()
                    .unwrap_or("when the configuration changes"),
                row.last_error.as_deref().unwrap_or("failed")
            ),
        };
        let target = match row.order_id {
            Some(o) if row.issuer == "certcentral" => format!("order {o}"),
            Some(o) => format!("{}, order {o}", row.issuer),
            None => row.issuer.clone(),
        };
        println!("  {} ({target}, {}): {what}", row.name, row.method);
        if let (Some(days), Some(source)) = (row.key_age_days, row.key_age_source) {
            println!("    key {days} days old (from the {source})");
        }
        if let Some(note) = &row.note {
            println!("  warning {}: {note}", row.name);
        }
    }
    if config.certificates.is_empty() {
        println!("  no certificates configured yet: add [[certificate]] tables (see the README)");
    }
    if online && !online_checks(&config).await? {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Folders the shipped unit already lets certkeeper write.
const UNIT_WRITABLE: &[&str] = &["/etc/ssl/certkeeper"];

/// `check --drop-in`: the `ReadWritePaths=` lines the shipped unit needs for this
/// configuration. A folder that does not exist yet is allowed through its nearest existing
/// ancestor (systemd refuses to start a unit whose `ReadWritePaths=` is missing).
pub(super) fn drop_in(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let own: Vec<&Path> = UNIT_WRITABLE
        .iter()
        .map(Path::new)
        .chain([config.daemon.state_dir.as_path()])
        .collect();
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    for cert in &config.certificates {
        for folder in crate::renewal::preflight::written_folders(cert) {
            let mut at = folder.as_path();
            while !at.exists()
                && let Some(p) = at.parent()
            {
                at = p;
            }
            paths.push(at.to_path_buf());
        }
    }
    paths.sort();
    paths.dedup();
    let logs = log_folders(&config);
    let covered = |p: &Path, by: &[std::path::PathBuf]| {
        own.iter().any(|o| p.starts_with(o)) || by.iter().any(|b| b != p && p.starts_with(b))
    };
    let needed: Vec<String> = paths
        .iter()
        .filter(|p| !covered(p, &paths))
        .map(|p| p.display().to_string())
        .collect();
    println!("# certkeeper check --drop-in for {}", path.display());
    println!(
        "# Save as /etc/systemd/system/certkeeper.service.d/paths.conf, then: systemctl daemon-reload"
    );
    println!("[Service]");
    if needed.is_empty() {
        println!("# nothing to add: every file is under {}", own_list(&own));
    } else {
        println!("ReadWritePaths={}", needed.join(" "));
    }
    if !logs.is_empty() {
        println!("# the deploy check writes its log there (`-`: skipped if missing)");
        println!("ReadWritePaths={}", logs.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Log folders that a web server's own configuration test writes to, for hooks that run it
/// (`nginx -t`, `apachectl configtest`): their logs are owned by the server's user.
fn log_folders(config: &Config) -> Vec<String> {
    const KNOWN: &[(&str, &str)] = &[
        ("nginx", "-/var/log/nginx"),
        ("apachectl", "-/var/log/apache2"),
        ("apache2ctl", "-/var/log/apache2"),
    ];
    let mut out: Vec<String> = Vec::new();
    for cert in &config.certificates {
        for (_, argv) in crate::renewal::preflight::commands(cert) {
            let program = argv.first().map(|p| p.rsplit('/').next().unwrap_or(p));
            for (name, folder) in KNOWN {
                if program == Some(*name) && !out.iter().any(|f| f == folder) {
                    out.push((*folder).to_owned());
                }
            }
        }
    }
    out
}

fn own_list(own: &[&Path]) -> String {
    own.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// What the configuration points at: folders, commands, key files. Errors make `check` exit
/// 78; warnings are printed.
fn environment(config: &Config) -> (Vec<ConfigError>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let err = |m: String| ConfigError::new(&config.path, m);
    for cert in &config.certificates {
        let name = cert.name.as_str();
        // Each [[dns_update]]'s key is checked once, below.
        for problem in crate::renewal::preflight::problems(cert, &[]) {
            errors.push(err(format!("certificate {name:?}: {problem}")));
        }
        if let Some(DnsPublisher::Hooks { cleanup: None, .. }) = &cert.validation.dns {
            warnings.push(format!(
                "certificate {name:?}: dns_publish without dns_cleanup: published records stay after validation"
            ));
        }
    }
    warnings.extend(
        crate::renewal::unconfigured_work(config)
            .iter()
            .map(ToString::to_string),
    );
    for u in &config.dns_updates {
        if let Err(e) = crate::validation::rfc2136::TsigKey::load(&u.tsig_key_file) {
            errors.push(err(format!("[[dns_update]] {:?}: {e}", u.name.as_str())));
        }
    }
    for a in &config.acme {
        if let Some(eab) = &a.eab
            && let Err(m) = crate::safefs::read_private(&eab.hmac_key_file, "EAB HMAC key file")
        {
            errors.push(err(format!("[[acme]] {:?}: {m}", a.name.as_str())));
        }
    }
    (errors, warnings)
}

/// `check --online`: read-only questions to CertCentral and the ACME CAs. Returns whether all
/// is well (warnings allowed).
async fn online_checks(config: &Config) -> anyhow::Result<bool> {
    let engine = Engine::from_config(config)?;
    let mut all_ok = true;
    if let Some(client) = &engine.certcentral {
        all_ok &= certcentral_checks(config, client).await;
    }
    all_ok &= crate::renewal::acme_checks(&engine, config).await;
    Ok(all_ok)
}

/// What the CAA records of `names` say about DigiCert, asked as a renewal asks them.
async fn caa_refusals(
    cert: &crate::config::Certificate,
    names: &[String],
) -> Result<Vec<String>, crate::validation::Error> {
    use crate::validation::{caa, dns};
    let resolver = dns::resolver(cert.validation.resolver()).await?;
    // Each certificate is asked afresh: `check` says what DNS says now.
    caa::refusals(
        resolver,
        names,
        &caa::Issuer::digicert(),
        &caa::Cache::default(),
    )
    .await
}

async fn certcentral_checks(config: &Config, client: &crate::certcentral::Client) -> bool {
    println!("online checks against {}:", config.certcentral.url);
    match client.account().await {
        Ok(_) => println!("  ok: the API key is accepted"),
        Err(e) => {
            println!("  ERROR: {e}");
            return false;
        }
    }
    let mut all_ok = true;
    let today = unix_now();
    for cert in &config.certificates {
        let Issuer::CertCentral { order_id, method } = &cert.issuer else {
            continue;
        };
        let order = match client.order_info(*order_id).await {
            Ok(o) => o,
            Err(e) => {
                println!("  ERROR {} (order {order_id}): {e}", cert.name);
                all_ok = false;
                continue;
            }
        };
        let mut problems: Vec<String> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let status = order.status.to_ascii_lowercase();
        if crate::renewal::ORDER_ENDED.contains(&status.as_str()) {
            problems.push(format!("the order is {status}: a new order is needed"));
        } else if (status == "reissue_pending" || order.has_pending_request == Some(true))
            && *method == Method::Reissue
        {
            warnings.push("a reissue is pending on the order; certkeeper did not start it".into());
        } else if matches!(status.as_str(), "pending" | "needs_approval" | "processing") {
            warnings.push(format!(
                "the order is {status}: not issued yet (validation or approval of the order itself)"
            ));
        }
        let end = order
            .order_valid_till
            .clone()
            .unwrap_or_else(|| "unknown".into());
        if let Some(t) = crate::renewal::end_of_day(&end) {
            let days = (t - today).div_euclid(86_400);
            if days < 0 {
                problems.push(format!("the order ended on {end}"));
            } else if days < 30 {
                warnings.push(format!(
                    "the order ends on {end}, in {days} days: renew the order in CertCentral"
                ));
            }
        }
        if *method == Method::Duplicate && order.allow_duplicates == Some(false) {
            problems
                .push("duplicates are not allowed on this order (method = \"duplicate\")".into());
        }
        if order.auto_reissue == Some(1) {
            warnings.push("auto-reissue is on: DigiCert's own reissues will collide with certkeeper's; turn it off for this order, or set cancel_foreign_reissue = true".into());
        }
        if cert.cert_validity_days.is_some() && !order.is_multi_year_plan() {
            warnings.push("cert_validity_days is set, but the order is not a Multi-year Plan: CertCentral ignores it on this order's reissues".into());
        }
        let names = crate::model::name_list(
            order
                .certificate
                .common_name
                .clone()
                .map(|c| c.to_ascii_lowercase()),
            &order.certificate.dns_names,
        );
        let wanted = cert.expected_names().unwrap_or_else(|| names.clone());
        let caa_ok = match caa_refusals(cert, &wanted).await {
            Ok(refused) if refused.is_empty() => true,
            Ok(refused) => {
                problems.extend(refused);
                false
            }
            Err(e) => {
                warnings.push(format!("cannot read the CAA records ({e}); the CA will"));
                false
            }
        };
        let dcv = dcv_summary(client, &order, today, &mut warnings).await;
        let summary = format!(
            "{} (order {order_id}): status {status}, order ends {end}; names {}; DCV {dcv}",
            cert.name,
            names.join(", ")
        );
        if problems.is_empty() {
            println!("  ok: {summary}");
            if caa_ok {
                println!(
                    "  ok: the CAA records allow digicert.com to issue for {}",
                    wanted.join(", ")
                );
            }
        } else {
            all_ok = false;
            println!("  ERROR {summary}: {}", problems.join("; "));
        }
        for w in warnings {
            println!("  warning {}: {w}", cert.name);
        }
    }
    all_ok
}

/// Whether DCV is pending on the order, and when known, when each domain's validation lapses
/// (warning within 30 days).
async fn dcv_summary(
    client: &crate::certcentral::Client,
    order: &crate::certcentral::OrderInfo,
    today: i64,
    warnings: &mut Vec<String>,
) -> String {
    let pending: Vec<&str> = order
        .domains
        .iter()
        .filter(|d| {
            d.dcv_status.as_deref().is_some_and(|s| {
                !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "valid" | "approved" | "complete" | "completed"
                )
            })
        })
        .map(|d| d.name.as_str())
        .collect();
    let mut lapses = Vec::new();
    for d in &order.domains {
        let Some(id) = d.id else { continue };
        let Ok(info) = client.domain_info(id).await else {
            continue;
        };
        let until = info
            .validations
            .iter()
            .filter_map(|v| v.validated_until.as_deref())
            .filter_map(crate::renewal::parse_instant)
            .min();
        if let Some(until) = until {
            let days = (until - today).div_euclid(86_400);
            lapses.push(format!(
                "{} until {}",
                d.name,
                crate::model::fmt_time(until)
            ));
            if days < 30 {
                warnings.push(format!(
                    "validation of {} lapses in {days} days ({}): the next renewal needs fresh DCV; set dcv_method",
                    d.name,
                    crate::model::fmt_time(until)
                ));
            }
        }
    }
    let mut s = if pending.is_empty() {
        "not pending".to_owned()
    } else {
        format!("pending for {}", pending.join(", "))
    };
    if !lapses.is_empty() {
        s.push_str(&format!(" (valid: {})", lapses.join(", ")));
    }
    s
}
