//! The ACME side of the phases (RFC 8555): the account (created once per CA directory, P-256,
//! stored 0600 in `STATE/acme/NAME/account-HASH.json`, EAB sent only then; [`account`]), newOrder
//! (with ARI's `replaces` and a
//! profile), the authorizations' challenges published through the same publishers as DCV,
//! the challenge POST once, finalize with our own CSR, the download.
//!
//! DigiCert's ACME acts on an existing CertCentral order through directory parameters
//! (`?action=reissue|duplicate&orderId=N`): the same account, another directory URL.

use tracing::info;

use super::{Answer, Checked, Polled, Prepared, Round, Wanted, WantedKind, retry_or_restart};
use crate::acme::{self, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus};
use crate::config::{Certificate, Issuer};
use crate::model::{self, SignatureHash, name_list};
use crate::renewal::journal;
use crate::renewal::step::AcmeTarget;
use crate::renewal::{Attempt, Ctx, Engine, Error, Failure, Request, Step, Target};
use crate::validation::{DnsRecord, RecordType};

mod account;
mod ari;
mod online;

use account::account_for;
use ari::installed_der;
pub(in crate::renewal) use ari::refresh_renewal_info;
pub(crate) use online::online_checks;

/// The directory URL a certificate's orders go to: the `[[acme]]` directory, with DigiCert's
/// `action` and `orderId` when the certificate names a CertCentral order.
pub(in crate::renewal) fn directory_for(engine: &Engine, cert: &Certificate) -> Option<String> {
    let Issuer::Acme { acme, order, .. } = &cert.issuer else {
        return None;
    };
    let base = engine.acme.get(acme)?.config.directory.to_string();
    Some(match order {
        Some((id, method)) => {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}action={method}&orderId={id}")
        }
        None => base,
    })
}

fn issuer<'e>(engine: &'e Engine, name: &str) -> Result<&'e acme::Issuer, Failure> {
    engine.acme.get(name).ok_or_else(|| {
        Failure::new(
            Error::Config(format!("no [[acme]] named {name:?}")),
            Step::Idle,
        )
    })
}

/// The CA's CAA identities (from its directory), our account and the challenge; none when the
/// directory names no identities (then its CAA check cannot be foreseen).
pub(super) async fn caa_issuer(
    ctx: &Ctx<'_>,
    a: &AcmeTarget,
) -> Result<Option<crate::validation::caa::Issuer>, Failure> {
    let issuer = issuer(ctx.engine, &a.acme)?;
    let info = issuer
        .directory_info(&a.directory)
        .await
        .map_err(|e| Failure::new(e, Step::Idle))?;
    if info.caa_identities.is_empty() {
        return Ok(None);
    }
    let account = account_for(ctx, a, &Step::Idle).await?;
    let Issuer::Acme { challenge, .. } = &ctx.cert.issuer else {
        return Ok(None);
    };
    Ok(Some(crate::validation::caa::Issuer {
        identities: info.caa_identities,
        account_uri: Some(account.id().to_owned()),
        method: Some(challenge.to_string()),
    }))
}

/// An error from the CA of `a`, with the `Retry-After` of its failed answer.
fn ca_error(engine: &Engine, a: &AcmeTarget, e: instant_acme::Error) -> acme::Error {
    match engine.acme.get(&a.acme) {
        Some(issuer) => issuer.error(&a.directory, e),
        None => acme::error(&a.directory, e),
    }
}

/// Idle → (before the key): the account, the names, ARI's `replaces`, the profile.
pub(super) async fn prepare(ctx: &mut Ctx<'_>, _now: i64) -> Result<Prepared, Failure> {
    let cert = ctx.cert;
    let Issuer::Acme { acme, .. } = &cert.issuer else {
        return Err(Failure::new(
            Error::Other("not an ACME certificate".into()),
            Step::Idle,
        ));
    };
    let issuer = issuer(ctx.engine, acme)?;
    let directory = directory_for(ctx.engine, cert).ok_or_else(|| {
        Failure::new(
            Error::Config(format!("no [[acme]] named {acme:?}")),
            Step::Idle,
        )
    })?;
    let target = AcmeTarget {
        acme: acme.clone(),
        directory: directory.clone(),
        replaces: None,
        profile: issuer.config.profile.clone(),
    };
    // The account exists before anything is ordered (created once, stored 0600).
    account_for(ctx, &target, &Step::Idle).await?;
    let common_name = cert.common_name.clone().ok_or_else(|| {
        Failure::new(
            Error::Config("an ACME certificate needs common_name".into()),
            Step::Idle,
        )
    })?;
    let names = name_list(
        Some(common_name.clone()),
        cert.dns_names.as_deref().unwrap_or_default(),
    );
    // `replaces` only for a certificate the CA's renewal information knows (RFC 9773 §5).
    let replaces = match &ctx.j.ari {
        Some(window) => installed_der(cert)
            .filter(|(serial, _)| *serial == window.serial)
            .and_then(|(_, der)| acme::certificate_id(&der).ok()),
        None => None,
    };
    Ok(Prepared {
        common_name,
        names,
        hash: cert.signature_hash.unwrap_or(SignatureHash::Sha256),
        target: Target::Acme(AcmeTarget { replaces, ..target }),
    })
}

/// newOrder: the order URL is journaled (Pending) before anything else is done with it.
pub(super) async fn submit(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    a: &AcmeTarget,
) -> Result<Answer, Failure> {
    let back = Step::KeyReady {
        attempt: attempt.clone(),
    };
    let account = account_for(ctx, a, &back).await?;
    let identifiers: Vec<Identifier> = attempt
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let replaces = match &a.replaces {
        Some(r) => Some(
            serde_json::from_str::<instant_acme::CertificateIdentifier<'_>>(&format!("\"{r}\""))
                .map(instant_acme::CertificateIdentifier::into_owned)
                .map_err(|e| {
                    Failure::new(
                        Error::Other(format!("invalid replaces {r:?}: {e}")),
                        Step::Idle,
                    )
                })?,
        ),
        None => None,
    };
    let mut new = NewOrder::new(&identifiers);
    if let Some(r) = replaces {
        new = new.replaces(r);
    }
    if let Some(p) = &a.profile {
        new = new.profile(p);
    }
    info!(cert = %ctx.cert.name, acme = %a.acme, names = %attempt.names.join(", "), "sending newOrder to the ACME CA");
    match account.new_order(&new).await {
        Ok(mut order) => {
            let url = order.url().to_owned();
            info!(cert = %ctx.cert.name, acme = %a.acme, order_id = %url, "the ACME CA created the order");
            let pending = order.state().status == OrderStatus::Pending;
            issuer(ctx.engine, &a.acme)?.keep(order);
            let request = Request::Acme { order_url: url };
            // Authorizations to complete: straight to validation (the order URL is journaled
            // with that step before anything is published).
            Ok(if pending {
                Answer::Validate(request)
            } else {
                Answer::Pending(request)
            })
        }
        // A lost newOrder leaves at most an unused order at the CA (it expires): send again.
        Err(e) => Err(retry_or_restart(ca_error(ctx.engine, a, e), &back)),
    }
}

/// The attempt's order as the CA has it now, the issuer that keeps its handle, and its URL.
async fn open_order<'e, 'r>(
    ctx: &Ctx<'e>,
    a: &AcmeTarget,
    request: &'r Request,
    here: &Step,
) -> Result<(&'e acme::Issuer, acme::Order, &'r str), Failure> {
    let Request::Acme { order_url } = request else {
        return Err(Failure::new(
            Error::Other("an ACME attempt with a CertCentral request".into()),
            Step::Idle,
        ));
    };
    let account = account_for(ctx, a, here).await?;
    let orders = issuer(ctx.engine, &a.acme)?;
    let order = orders
        .order(&account, order_url)
        .await
        .map_err(|e| retry_or_restart(orders.error(&a.directory, e), here))?;
    Ok((orders, order, order_url))
}

/// Pending: the order's state; finalize with our CSR once it is ready; download once valid.
pub(super) async fn poll(
    ctx: &mut Ctx<'_>,
    _attempt: &Attempt,
    a: &AcmeTarget,
    request: &Request,
    here: &Step,
) -> Result<Polled, Failure> {
    let engine = ctx.engine;
    let fail = |e| retry_or_restart(ca_error(engine, a, e), here);
    let (orders, mut order, order_url) = open_order(ctx, a, request, here).await?;
    let mut status = order.state().status;
    if status == OrderStatus::Ready {
        let csr = ctx
            .store
            .read(journal::CSR)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        let der = ::pem::parse(csr.as_bytes()).map_err(|e| {
            Failure::new(
                Error::Other(format!("the stored CSR is unreadable: {e}")),
                Step::Idle,
            )
        })?;
        info!(cert = %ctx.cert.name, order_id = %order_url, "finalizing the order with the CSR");
        order.finalize_csr(der.contents()).await.map_err(fail)?;
        status = order.state().status;
    }
    let waiting = || Polled::Waiting {
        request: request.clone(),
        why: format!("the ACME CA to issue order {order_url}"),
    };
    match status {
        OrderStatus::Pending => {
            orders.keep(order);
            Ok(Polled::Answer(Answer::Validate(request.clone())))
        }
        OrderStatus::Ready | OrderStatus::Processing => {
            orders.keep(order);
            Ok(waiting())
        }
        OrderStatus::Valid => match order.certificate().await.map_err(fail)? {
            Some(pem) => {
                info!(cert = %ctx.cert.name, order_id = %order_url, "certificate issued; downloaded");
                Ok(Polled::Answer(Answer::Issued {
                    pem,
                    request: Some(request.clone()),
                }))
            }
            None => {
                orders.keep(order);
                Ok(waiting())
            }
        },
        OrderStatus::Invalid => Err(Failure::new(
            Error::Other(format!(
                "the ACME CA marked order {order_url} invalid{}",
                order
                    .state()
                    .error
                    .as_ref()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default()
            )),
            Step::Idle,
        )),
    }
}

fn challenge_type(cert: &Certificate) -> ChallengeType {
    match &cert.issuer {
        Issuer::Acme {
            challenge: model::ChallengeType::Dns01,
            ..
        } => ChallengeType::Dns01,
        _ => ChallengeType::Http01,
    }
}

/// The CA's own words on why a challenge of `authz` failed, if it gave them.
fn challenge_problem(authz: &instant_acme::AuthorizationState) -> Option<String> {
    authz
        .challenges
        .iter()
        .find_map(|c| c.error.as_ref())
        .map(|p| model::outside_text(&p.to_string(), 1000))
}

fn domain_of(id: &Identifier) -> String {
    match id {
        Identifier::Dns(d) => model::validation_domain(d).to_owned(),
        other => format!("{other:?}"),
    }
}

/// What the pending authorizations' challenges need published.
pub(super) async fn round(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    a: &AcmeTarget,
    request: &Request,
    here: &Step,
) -> Result<Round, Failure> {
    let engine = ctx.engine;
    let fail = |e| retry_or_restart(ca_error(engine, a, e), here);
    let (orders, mut order, _) = open_order(ctx, a, request, here).await?;
    if order.state().status != OrderStatus::Pending {
        orders.keep(order);
        return Ok(Round {
            request: request.clone(),
            records: Vec::new(),
            done: Some(Answer::Pending(request.clone())),
        });
    }
    let kind = challenge_type(ctx.cert);
    let mut records = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(next) = authzs.next().await {
        let mut authz = next.map_err(fail)?;
        let domain = domain_of(authz.identifier().identifier);
        // Only this attempt's names reach files, DNS and hooks, whatever the CA lists.
        let ours = matches!(authz.identifier().identifier, Identifier::Dns(n)
            if attempt.names.iter().any(|a| model::validation_domain(a).eq_ignore_ascii_case(model::validation_domain(n))));
        if !ours {
            let shown: String = format!("{:?}", authz.identifier().identifier)
                .chars()
                .take(80)
                .collect();
            return Err(Failure::new(
                Error::Other(format!(
                    "the ACME CA asks to validate {shown}, which this renewal did not ask for; nothing was published"
                )),
                Step::Idle,
            ));
        }
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                let problem = challenge_problem(&authz).unwrap_or_else(|| format!("{other:?}"));
                return Err(Failure::new(
                    Error::Other(format!(
                        "the ACME CA could not validate {domain} (authorization {other:?}): {problem}"
                    )),
                    Step::Idle,
                ));
            }
        }
        let Some(challenge) = authz.challenge(kind.clone()) else {
            return Err(Failure::new(
                Error::Config(format!(
                    "the ACME CA offers no {kind:?} challenge for {domain}"
                )),
                Step::Idle,
            ));
        };
        let key_authorization = challenge.key_authorization();
        let what = match kind {
            ChallengeType::Dns01 => WantedKind::Dns(DnsRecord {
                name: format!("_acme-challenge.{domain}"),
                rtype: RecordType::Txt,
                value: key_authorization.dns_value(),
            }),
            _ => WantedKind::File {
                path: format!(".well-known/acme-challenge/{}", challenge.token),
                content: key_authorization.as_str().to_owned(),
            },
        };
        let wanted = Wanted { domain, what };
        if !records.contains(&wanted) {
            records.push(wanted);
        }
    }
    orders.keep(order);
    let done = records.is_empty().then(|| Answer::Pending(request.clone()));
    Ok(Round {
        request: request.clone(),
        records,
        done,
    })
}

/// Tells the CA the challenges are ready (once), then looks at the authorizations.
pub(super) async fn check(
    ctx: &mut Ctx<'_>,
    _attempt: &Attempt,
    a: &AcmeTarget,
    request: &Request,
    asked: bool,
    here: &Step,
) -> Result<Checked, Failure> {
    let engine = ctx.engine;
    let fail = |e| retry_or_restart(ca_error(engine, a, e), here);
    let (orders, mut order, order_url) = open_order(ctx, a, request, here).await?;
    let kind = challenge_type(ctx.cert);
    let mut unvalidated = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(next) = authzs.next().await {
        let mut authz = next.map_err(fail)?;
        let shown = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Valid => {}
            AuthorizationStatus::Pending => {
                unvalidated.push(shown.clone());
                let problem = challenge_problem(&authz);
                match authz.challenge(kind.clone()) {
                    Some(mut challenge)
                        if challenge.status == instant_acme::ChallengeStatus::Pending =>
                    {
                        if !asked {
                            info!(cert = %ctx.cert.name, order_id = %order_url, name = %shown, "telling the ACME CA the challenge is ready");
                        }
                        challenge.set_ready().await.map_err(fail)?;
                    }
                    _ => {
                        if let Some(problem) = problem {
                            refused.push(format!("{shown}: {problem}"));
                        }
                    }
                }
            }
            other => {
                let problem = challenge_problem(&authz).unwrap_or_else(|| format!("{other:?}"));
                refused.push(format!("{shown}: {problem}"));
            }
        }
    }
    if !refused.is_empty() {
        return Err(Failure::new(
            Error::Other(format!(
                "the ACME CA could not validate {}",
                refused.join("; ")
            )),
            Step::Idle,
        ));
    }
    orders.keep(order);
    if unvalidated.is_empty() {
        return Ok(Checked::Done(Box::new(Answer::Pending(request.clone()))));
    }
    Ok(Checked::NotYet {
        answer: format!(
            "the ACME CA has not validated {} yet",
            unvalidated.join(", ")
        ),
        unvalidated,
    })
}
