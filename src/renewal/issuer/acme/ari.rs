//! Renewal information (ARI, RFC 9773) for idle ACME certificates: the CA's suggested window
//! for the installed certificate, kept until its `Retry-After`.

use tracing::{debug, info, warn};

use super::account::account;
use super::directory_for;
use crate::acme;
use crate::config::{Certificate, Issuer};
use crate::model;
use crate::renewal::Ctx;
use crate::renewal::journal::AriWindow;
use crate::scheduler;

/// The installed certificate's serial and DER, if it can be read.
pub(super) fn installed_der(cert: &Certificate) -> Option<(String, Vec<u8>)> {
    let text = crate::safefs::read_to_string(&cert.files.cert, crate::safefs::PEM_LIMIT).ok()?;
    let facts = crate::crypto::CertFacts::from_pem(&text).ok()?;
    Some((facts.serial, facts.der))
}

/// For an idle ACME certificate whose CA offers renewal information (ARI, RFC 9773): asks for
/// the window of the installed certificate when the one on record is stale, and chooses a
/// random point in it (kept for that window). Failures are logged; the lifetime rule stays.
pub(in crate::renewal) async fn refresh_renewal_info(ctx: &mut Ctx<'_>, now: i64) {
    let Issuer::Acme { acme, .. } = &ctx.cert.issuer else {
        return;
    };
    let Some((serial, der)) = installed_der(ctx.cert) else {
        return;
    };
    if ctx
        .j
        .ari
        .as_ref()
        .is_some_and(|w| w.serial == serial && w.next_fetch > now)
    {
        return;
    }
    let Some(directory) = directory_for(ctx.engine, ctx.cert) else {
        return;
    };
    let Some(issuer) = ctx.engine.acme.get(acme) else {
        return;
    };
    // Only if the directory offers it (a cheap GET; cached by the account otherwise).
    match issuer.directory_info(&directory).await {
        Ok(info) if info.renewal_info => {}
        Ok(_) => return,
        Err(e) => {
            debug!(cert = %ctx.cert.name, error = %e, "cannot read the ACME directory for renewal information");
            return;
        }
    }
    let account = match account(ctx.engine, acme, &directory).await {
        Ok(a) => a,
        Err(e) => {
            debug!(cert = %ctx.cert.name, error = %e, "no ACME account for renewal information");
            return;
        }
    };
    match acme::renewal_info(&account, &der).await {
        Ok((start, end, explanation, retry_after)) => {
            let refresh = retry_after.clamp(
                std::time::Duration::from_secs(60),
                scheduler::ARI_REFRESH_MAX,
            );
            let same_window = ctx
                .j
                .ari
                .as_ref()
                .is_some_and(|w| w.serial == serial && w.start == start && w.end == end);
            let chosen = match (&ctx.j.ari, same_window) {
                (Some(w), true) => w.chosen,
                _ => scheduler::ari_point(start, end, now, rand::random::<f64>()),
            };
            if !same_window {
                info!(cert = %ctx.cert.name, acme = %acme, window_start = %model::fmt_time(start), window_end = %model::fmt_time(end), renew_at = %model::fmt_time(chosen), "the ACME CA suggests a renewal window (ARI)");
            }
            ctx.j.ari = Some(AriWindow {
                serial,
                start,
                end,
                chosen,
                next_fetch: now.saturating_add(crate::renewal::secs(refresh)),
                explanation,
            });
        }
        Err(e) => {
            // A certificate the CA does not know (issued elsewhere): ask again in a while.
            debug!(cert = %ctx.cert.name, error = %e, "no renewal information for the installed certificate");
            ctx.j.ari = Some(AriWindow {
                serial: String::new(),
                start: 0,
                end: 0,
                chosen: i64::MAX,
                next_fetch: now.saturating_add(6 * 3600),
                explanation: None,
            });
        }
    }
    if let Err(e) = ctx.store.save(ctx.j) {
        warn!(cert = %ctx.cert.name, error = %e, "cannot record the renewal window");
    }
}
