//! The CertCentral side of the phases: order info, reissue or duplicate, the reissue trap,
//! reconciling a lost answer, downloads; domain validation with the order's random value is in
//! [`dcv`].

mod dcv;

pub(super) use dcv::{check, round};

use std::sync::Arc;

use tracing::{info, warn};

use super::{Answer, Polled, Prepared};
use crate::certcentral::{self, Client, SubmitCertificate, SubmitRequest, SubmitResponse};
use crate::crypto;
use crate::model::{DcvMethod, Method, SignatureHash, companion, name_list, unix_now};
use crate::renewal::step::RandomValue;
use crate::renewal::{
    Attempt, Ctx, Engine, Error, Failure, LastError, ORDER_ENDED, OrderSnapshot, Request, Step,
    Target, end_of_day, journal,
};

/// Order statuses of an order that was never issued: the order itself is still being validated
/// or approved (certcentral-api.md §3.1).
const ORDER_NOT_ISSUED: &[&str] = &[
    "needs_approval",
    "pending",
    "processing",
    "waiting_pickup",
    "needs_csr",
];

/// The client, reporting each in-call retry to `status` (a note beside the journal).
fn client(ctx: &Ctx<'_>) -> Result<Client, Failure> {
    let client = ctx.engine.certcentral.as_ref().ok_or_else(|| {
        Failure::new(
            Error::Config("no CertCentral client (no API key was loaded)".into()),
            Step::Idle,
        )
    })?;
    let store = ctx.store.clone();
    let step = ctx.j.step.name();
    Ok(client.observed(Arc::new(move |e, wait| {
        let note = LastError {
            at: unix_now(),
            step: step.to_owned(),
            message: format!(
                "{e} (retrying in {})",
                humantime::format_duration(std::time::Duration::from_millis(
                    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
                ))
            ),
            class: Some(crate::renewal::RetryClass::Transient),
        };
        if let Ok(json) = serde_json::to_vec(&note) {
            let _ = store.write(journal::RETRYING, &json);
        }
    })))
}

/// Idle → (before the key): reads the order, checks it can be renewed, settles the names.
pub(super) async fn prepare(ctx: &mut Ctx<'_>, now: i64) -> Result<Prepared, Failure> {
    let cert = ctx.cert;
    let (order_id, method) = (cert.order_id().unwrap_or_default(), cert.method());
    let cc = client(ctx)?;
    let idle = |e: certcentral::Error| Failure::new(e, Step::Idle);
    let mut order = cc.order_info(order_id).await.map_err(idle)?;
    let mut status = order.status.to_ascii_lowercase();
    let reissue_waiting = || status == "reissue_pending" || order.has_pending_request == Some(true);
    if method == Method::Reissue && reissue_waiting() && cert.cancel_foreign_reissue {
        warn!(cert = %cert.name, order_id, "canceling a pending reissue that certkeeper did not start (cancel_foreign_reissue = true)");
        cc.cancel_pending(
            order_id,
            "canceled by certkeeper: it renews this order with keys it holds",
        )
        .await
        .map_err(idle)?;
        order = cc.order_info(order_id).await.map_err(idle)?;
        status = order.status.to_ascii_lowercase();
    }
    if ORDER_ENDED.contains(&status.as_str()) {
        return Err(Failure::new(
            Error::OrderEnded { order_id, status },
            Step::Idle,
        ));
    }
    if let Some(end) = order.order_valid_till.as_deref().and_then(end_of_day)
        && end < now
    {
        return Err(Failure::new(
            Error::OrderEnded {
                order_id,
                status: format!(
                    "past its end date ({})",
                    order.order_valid_till.as_deref().unwrap_or("")
                ),
            },
            Step::Idle,
        ));
    }
    if method == Method::Reissue
        && (status == "reissue_pending" || order.has_pending_request == Some(true))
    {
        return Err(Failure::new(Error::ForeignReissue { order_id }, Step::Idle));
    }
    if ORDER_NOT_ISSUED.contains(&status.as_str()) && order.certificate.serial_number.is_none() {
        return Err(Failure::new(
            Error::Other(format!(
                "order {order_id} is not issued yet (status {status}): CertCentral is still validating or approving the order itself; certkeeper renews it once it is issued"
            )),
            Step::Idle,
        ));
    }
    if !matches!(status.as_str(), "issued" | "approved") {
        warn!(cert = %cert.name, order_id, %status, "unexpected order status; trying anyway");
    }
    let oc = &order.certificate;
    let common_name = cert
        .common_name
        .clone()
        .or_else(|| cert.dns_names.as_ref().and_then(|d| d.first().cloned()))
        .or_else(|| oc.common_name.clone().map(|c| c.to_ascii_lowercase()))
        .ok_or_else(|| {
            Failure::new(
                Error::Other(format!(
                    "order {order_id} has no common name; set common_name"
                )),
                Step::Idle,
            )
        })?;
    let names = name_list(
        Some(common_name.clone()),
        cert.dns_names.as_ref().unwrap_or(&oc.dns_names),
    );
    if method == Method::Duplicate {
        let on_order = name_list(
            oc.common_name.as_ref().map(|c| c.to_ascii_lowercase()),
            &oc.dns_names,
        );
        duplicate_rules(&names, &on_order).map_err(|m| {
            Failure::new(
                Error::Config(format!(
                    "certificate {:?} (order {order_id}): {m}",
                    cert.name.as_str()
                )),
                Step::Idle,
            )
        })?;
    }
    if cert.validation.dcv_method == DcvMethod::HttpToken
        && let Some(w) = names.iter().find(|n| n.starts_with("*."))
    {
        return Err(Failure::new(
            Error::Config(format!(
                "order {order_id} names {w}, a wildcard: http-token cannot validate it (CertCentral answers invalid_wildcard_dcv_method); use dcv_method = \"dns-txt-token\" or \"dns-cname-token\""
            )),
            Step::Idle,
        ));
    }
    let hash = cert
        .signature_hash
        .or(match oc.signature_hash.as_deref() {
            Some("sha384") => Some(SignatureHash::Sha384),
            Some("sha512") => Some(SignatureHash::Sha512),
            _ => None,
        })
        .unwrap_or(SignatureHash::Sha256);
    let multi_year_plan = order.is_multi_year_plan();
    Ok(Prepared {
        common_name,
        names,
        hash,
        target: Target::CertCentral(OrderSnapshot {
            order_id,
            method,
            certificate_id: oc.id,
            serial: oc.serial_number.clone(),
            server_platform: cert.server_platform.or(oc.server_platform.id).unwrap_or(-1),
            signature_hash: hash.as_str().to_owned(),
            order_valid_till: order.order_valid_till.clone(),
            multi_year_plan,
            dcv_method: order.dcv_method.clone(),
            dcv_random_value: order.dcv_random_value.clone(),
        }),
    })
}

/// The reissue or duplicate POST.
pub(super) async fn submit(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    o: &OrderSnapshot,
    csr: &str,
) -> Result<Answer, Failure> {
    let cert = ctx.cert;
    let back = Step::KeyReady {
        attempt: attempt.clone(),
    };
    let submitting = Step::Submitting {
        attempt: attempt.clone(),
        at: unix_now(),
    };
    let req = SubmitRequest {
        certificate: SubmitCertificate {
            common_name: attempt.common_name.clone(),
            dns_names: attempt.names.clone(),
            // "a base64-encoded string without line breaks" (certcentral-api.md §2.1).
            csr: csr.replace(['\r', '\n'], ""),
            server_platform: certcentral::PlatformRef {
                id: o.server_platform,
            },
            signature_hash: o.signature_hash.clone(),
            // Duplicates take the current certificate's dates; DigiCert lists no validity for
            // them (certcentral-api.md §2.2).
            cert_validity: cert
                .cert_validity_days
                .filter(|_| o.method == Method::Reissue)
                .map(|days| certcentral::CertValidity { days }),
        },
        skip_approval: cert.skip_approval,
        comments: cert.comments.clone(),
    };
    info!(cert = %cert.name, order_id = o.order_id, method = %o.method, "sending the request to CertCentral");
    let cc = client(ctx)?;
    let sent = match o.method {
        Method::Reissue => cc.reissue(o.order_id, &req).await,
        Method::Duplicate => cc.duplicate(o.order_id, &req).await,
    };
    match sent {
        Ok(resp) => Ok(accepted(ctx, o, resp)),
        // The request may have been accepted: stay in Submitting; resuming reconciles.
        Err(e) if e.maybe_processed() => Err(Failure::new(e, submitting)),
        Err(e) if e.is_retryable() => Err(Failure::new(e, back)),
        Err(e) if e.has_code("invalid_dns_name_on_duplicate") => {
            without_companion(ctx, attempt.clone(), e)
        }
        Err(e) if e.has_code("cert_validity_exceeds_order_validity") => Err(Failure::new(
            Error::Config(format!(
                "{e} — cert_validity_days = {} runs past the end of order {} ({}); lower it, or remove it to get the longest validity the order allows",
                cert.cert_validity_days.unwrap_or_default(),
                o.order_id,
                o.order_valid_till.as_deref().unwrap_or("end date unknown")
            )),
            Step::Idle,
        )),
        Err(e) if o.method == Method::Duplicate && lacks_validation(&e) => Err(Failure::new(
            Error::Other(format!(
                "{e} — a duplicate cannot be validated: CertCentral issues duplicates only while the order's domain validation is valid. Reissue the order's primary certificate with dcv_method set (certkeeper then validates the names), or validate the domains in CertCentral; the duplicate is retried with backoff"
            )),
            Step::Idle,
        )),
        Err(e) => Err(Failure::new(e, Step::Idle)),
    }
}

/// Whether CertCentral refused for lack of domain validation.
fn lacks_validation(e: &certcentral::Error) -> bool {
    e.api_errors().iter().any(|a| {
        let code = a.code.to_ascii_lowercase();
        code.contains("dcv") || code.contains("validation") || code.contains("domain_validation")
    })
}

/// Some products list a free `www.`/base companion among the order's names but refuse it on a
/// duplicate (certcentral-api.md §2.2): retry once without it, with the same key.
fn without_companion(
    ctx: &mut Ctx<'_>,
    attempt: Attempt,
    e: certcentral::Error,
) -> Result<Answer, Failure> {
    let extra = companion(&attempt.common_name);
    let configured = ctx
        .cert
        .dns_names
        .as_ref()
        .is_some_and(|d| d.contains(&extra));
    if !attempt.names.contains(&extra) || configured {
        return Err(Failure::new(e, Step::Idle));
    }
    warn!(cert = %ctx.cert.name, order_id = ctx.cert.order_id(), companion = %extra, "CertCentral refused the order's auto-added companion name on a duplicate; retrying once without it");
    let mut retry = attempt;
    retry.names.retain(|n| *n != extra);
    let key = ctx
        .store
        .read(journal::KEY)
        .map_err(|e| Failure::new(e, Step::Idle))?;
    let csr = crypto::csr_for_key_pem(&key, &retry.common_name, &retry.names)
        .map_err(|e| Failure::new(e, Step::Idle))?;
    ctx.store
        .write(journal::CSR, csr.as_bytes())
        .map_err(|e| Failure::new(e, Step::Idle))?;
    Ok(Answer::Resubmit(retry))
}

/// Classifies a 201 (certcentral-api.md §2.1): issued at once, waiting for validation, or
/// pending.
fn accepted(ctx: &Ctx<'_>, o: &OrderSnapshot, resp: SubmitResponse) -> Answer {
    let request_id = resp.requests.first().map(|r| r.id);
    info!(cert = %ctx.cert.name, order_id = o.order_id, request_id, certificate_id = resp.certificate_id, immediate = !resp.certificate_chain.is_empty(), "CertCentral accepted the request");
    let random_value = resp
        .dcv_random_value
        .clone()
        .filter(|v| !v.trim().is_empty())
        .map(|value| RandomValue {
            value,
            expires: None,
        });
    let request = Request::CertCentral {
        request_id,
        certificate_id: resp.certificate_id,
        random_value,
        method_set: false,
        issued: false,
    };
    if !resp.certificate_chain.is_empty() {
        let pem: String = resp
            .certificate_chain
            .iter()
            .map(|c| format!("{}\n", c.pem.trim()))
            .collect();
        return Answer::Issued {
            pem,
            request: Some(request),
        };
    }
    if ctx.cert.validation.dcv_method != DcvMethod::None {
        Answer::Validate(request)
    } else {
        Answer::Pending(request)
    }
}

/// Submitting, resumed: was our request accepted? Look for our CSR's key on the order.
pub(super) async fn reconcile(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    o: &OrderSnapshot,
) -> Result<Option<Answer>, Failure> {
    let stay = Step::Submitting {
        attempt: attempt.clone(),
        at: unix_now(),
    };
    let our_spki = pending_spki(ctx).map_err(|e| Failure::new(e, Step::Idle))?;
    let cc = client(ctx)?;
    let listed = find_listed(&cc, o, &our_spki)
        .await
        .map_err(|e| Failure::new(e, stay))?;
    match listed {
        Some(entry) => {
            info!(cert = %ctx.cert.name, order_id = o.order_id, certificate_id = entry.id, "the earlier request was accepted; waiting for it, not sending another");
            let request = Request::CertCentral {
                request_id: None,
                certificate_id: Some(entry.id),
                random_value: None,
                method_set: false,
                issued: false,
            };
            Ok(Some(if ctx.cert.validation.dcv_method != DcvMethod::None {
                Answer::Validate(request)
            } else {
                Answer::Pending(request)
            }))
        }
        None => {
            info!(cert = %ctx.cert.name, order_id = o.order_id, "the earlier request never reached CertCentral; it will be sent again");
            Ok(None)
        }
    }
}

/// Polls after which a duplicate whose CSR is not listed is looked for among entries without a
/// CSR (some accounts do not echo it).
const DUPLICATE_LIST_PATIENCE: u32 = 3;

/// Pending: one look at CertCentral.
pub(super) async fn poll(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    o: &OrderSnapshot,
    request: &Request,
    polls: u32,
    here: &Step,
) -> Result<Polled, Failure> {
    let Request::CertCentral {
        certificate_id,
        issued,
        ..
    } = request
    else {
        return Err(Failure::new(
            Error::Other("a CertCentral attempt with an ACME request".into()),
            Step::Idle,
        ));
    };
    let retry_here = |e: certcentral::Error| Failure::new(e, here.clone());
    let cc = client(ctx)?;
    if let (true, Some(id)) = (*issued, *certificate_id) {
        info!(cert = %ctx.cert.name, order_id = o.order_id, certificate_id = id, "downloading the issued certificate");
        let pem = cc
            .download(id, certcentral::FORMAT_PEM_NOROOT)
            .await
            .map_err(retry_here)?;
        return Ok(Polled::Answer(Answer::Issued {
            pem,
            request: Some(request.clone()),
        }));
    }
    let our_spki = pending_spki(ctx).map_err(|e| Failure::new(e, Step::Idle))?;
    let found = match o.method {
        Method::Reissue => {
            let order = cc.order_info(o.order_id).await.map_err(retry_here)?;
            let status = order.status.to_ascii_lowercase();
            let current = order.certificate.id;
            if ORDER_ENDED.contains(&status.as_str()) {
                return Err(Failure::new(
                    Error::OrderEnded {
                        order_id: o.order_id,
                        status,
                    },
                    Step::Idle,
                ));
            }
            let issued = matches!(status.as_str(), "issued" | "approved");
            match certificate_id {
                // We know our certificate's id: done when the order shows it.
                Some(id) if issued && current == Some(*id) => Some(*id),
                // The reissue trap: "issued" with the old certificate means nothing yet.
                None if issued && current.is_some() && current != o.certificate_id => current,
                // Issued but not (yet) ours: look for our request in the reissue list.
                _ if issued => listed_state(&cc, o, &our_spki, false)
                    .await
                    .map_err(retry_here)?
                    .map_err(|e| Failure::new(e, Step::Idle))?,
                _ => None,
            }
        }
        Method::Duplicate => {
            let by_csr = listed_state(&cc, o, &our_spki, polls >= DUPLICATE_LIST_PATIENCE)
                .await
                .map_err(retry_here)?
                .map_err(|e| Failure::new(e, Step::Idle))?;
            // A documented 201 may give the duplicate's id: try it; the pre-install gate
            // decides whether it is ours.
            by_csr.or(*certificate_id)
        }
    };
    let Some(id) = found else {
        let mut why = "CertCentral to issue the certificate (approval or validation)".to_owned();
        if o.method == Method::Duplicate {
            why.push_str("; a duplicate cannot complete domain validation itself: if the order's validation lapsed, reissue the primary with dcv_method set or validate the domains in CertCentral");
        }
        return Ok(Polled::Waiting {
            request: request.clone(),
            why,
        });
    };
    info!(cert = %ctx.cert.name, order_id = o.order_id, certificate_id = id, "certificate issued");
    let _ = attempt;
    Ok(Polled::Issued(Request::CertCentral {
        request_id: request.request_id(),
        certificate_id: Some(id),
        random_value: None,
        method_set: false,
        issued: true,
    }))
}

/// Cancels our pending reissue (a duplicate cannot be canceled: it is left to CertCentral).
/// `Ok(false)`: nothing to cancel.
pub(super) async fn abandon(engine: &Engine, o: &OrderSnapshot) -> Result<bool, Error> {
    if o.method != Method::Reissue {
        return Ok(false);
    }
    let cc = engine.certcentral.as_ref().ok_or_else(|| {
        Error::Config("no CertCentral API key is configured to cancel it with".into())
    })?;
    cc.cancel_pending(
        o.order_id,
        "canceled by certkeeper: the renewal was abandoned",
    )
    .await?;
    Ok(true)
}

async fn find_listed(
    cc: &Client,
    o: &OrderSnapshot,
    our_spki: &[u8],
) -> Result<Option<certcentral::ListedCertificate>, certcentral::Error> {
    let list = match o.method {
        Method::Reissue => cc.list_reissues(o.order_id).await,
        Method::Duplicate => cc.list_duplicates(o.order_id).await,
    }?;
    Ok(list
        .certificates
        .into_iter()
        .find(|c| csr_matches(c.csr.as_deref(), our_spki)))
}

/// Where our listed request stands: its certificate id once issued (duplicates show
/// `approved`, §3.3; both count), an error once rejected, else nothing yet. With
/// `without_csr`, an issued entry that lists no CSR at all is taken too (the pre-install gate
/// then checks the key).
async fn listed_state(
    cc: &Client,
    o: &OrderSnapshot,
    our_spki: &[u8],
    without_csr: bool,
) -> Result<Result<Option<u64>, Error>, certcentral::Error> {
    let list = match o.method {
        Method::Reissue => cc.list_reissues(o.order_id).await,
        Method::Duplicate => cc.list_duplicates(o.order_id).await,
    }?;
    let done = |s: &str| matches!(s.to_ascii_lowercase().as_str(), "issued" | "approved");
    let ours = list
        .certificates
        .iter()
        .find(|c| csr_matches(c.csr.as_deref(), our_spki));
    Ok(match ours {
        Some(e) if e.status.eq_ignore_ascii_case("rejected") => Err(Error::Other(format!(
            "CertCentral rejected the {} request on order {}",
            o.method, o.order_id
        ))),
        Some(e) if done(&e.status) => Ok(Some(e.id)),
        Some(_) => Ok(None),
        None if without_csr => Ok(list
            .certificates
            .iter()
            .filter(|c| c.csr.as_deref().is_none_or(|s| s.trim().is_empty()) && done(&c.status))
            .max_by_key(|c| c.id)
            .map(|c| c.id)),
        None => Ok(None),
    })
}

fn pending_spki(ctx: &Ctx<'_>) -> Result<Vec<u8>, Error> {
    Ok(crypto::key_spki(&ctx.store.read(journal::KEY)?)?)
}

/// Whether a CSR listed by CertCentral carries our key. Comparing keys, not text, survives
/// CertCentral re-wrapping the PEM (certcentral-api.md §3.3).
fn csr_matches(listed: Option<&str>, our_spki: &[u8]) -> bool {
    listed
        .and_then(|text| crypto::csr_spki(text).ok())
        .is_some_and(|spki| spki == our_spki)
}

/// A duplicate must keep the order's names: each name must be on the order (a SAN may become
/// the common name), or be a single-label subdomain of one of its wildcards
/// (certcentral-api.md §2.2).
fn duplicate_rules(wanted: &[String], on_order: &[String]) -> Result<(), String> {
    let covered = |n: &String| {
        on_order.contains(n)
            || on_order.iter().any(|o| {
                o.strip_prefix("*.").is_some_and(|base| {
                    n.split_once('.')
                        .is_some_and(|(label, rest)| rest == base && label != "*")
                })
            })
    };
    let bad: Vec<&str> = wanted
        .iter()
        .filter(|n| !covered(n))
        .map(String::as_str)
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "a duplicate may only use the order's names ({}) or single-label subdomains of its wildcards, but common_name/dns_names ask for {}; fix common_name/dns_names or leave them out to use the order's",
        on_order.join(", "),
        bad.join(", ")
    ))
}

/// The free `www.`/base companion CertCentral adds to some orders (certcentral-api.md §2.2).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_name_rules() {
        let order = vec!["example.test".to_owned(), "*.example.test".to_owned()];
        assert!(duplicate_rules(&["a.example.test".to_owned()], &order).is_ok());
        assert!(duplicate_rules(&["a.b.example.test".to_owned()], &order).is_err());
        assert!(duplicate_rules(&["other.test".to_owned()], &order).is_err());
        assert_eq!(companion("www.example.test"), "example.test");
        assert_eq!(companion("example.test"), "www.example.test");
    }
}
