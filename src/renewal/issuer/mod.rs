//! The seam between the steps and the CAs. Each phase of the state machine asks the issuer of
//! the attempt (CertCentral's Services API, or an ACME CA) one question and gets an answer in
//! the steps' own terms; what differs between the two lives in [`certcentral`] and [`acme`]
//! and in the attempt's [`Target`] and [`Request`].
//!
//! | phase | CertCentral | ACME |
//! | --- | --- | --- |
//! | prepare | order info: status, names, platform, hash | account, ARI `replaces`, profile |
//! | CAA | DigiCert's issuer domains | the directory's `caaIdentities`, the account, the challenge |
//! | submit | `POST …/reissue` or `…/duplicate` (the CSR) | `newOrder` |
//! | reconcile | our CSR's key in the reissue/duplicate list | (a lost newOrder is simply sent again) |
//! | poll | order info, the lists, download | the order; finalize (the CSR) when ready; download |
//! | round | the random value (201, order info, `dcv-random-value`) → file or records | the pending authorizations' challenges → file or records |
//! | check | `PUT …/check-dcv` | challenge ready once, then the authorizations |
//! | abandon | cancel a pending reissue | deactivate nothing (orders expire) |

pub(super) mod acme;
pub(super) mod certcentral;

use super::{Attempt, Ctx, Engine, Failure, Request, Step, Target};
use crate::model::SignatureHash;
use crate::validation::DnsRecord;

/// What a new attempt renews: its names and target.
pub(super) struct Prepared {
    pub(super) common_name: String,
    pub(super) names: Vec<String>,
    pub(super) hash: SignatureHash,
    pub(super) target: Target,
}

/// What the CA answered.
pub(super) enum Answer {
    /// Issued: the PEM chain, and the request to poll if that chain fails the checks.
    Issued {
        pem: String,
        request: Option<Request>,
    },
    /// Accepted and pending (approval, issuance): poll this request.
    Pending(Request),
    /// Accepted; the CA waits for the names to be validated.
    Validate(Request),
    /// Send again for these names, with the same key (a name the CA refused was dropped).
    Resubmit(Attempt),
}

/// What a poll found.
pub(super) enum Polled {
    Answer(Answer),
    /// Still waiting, and for what.
    Waiting {
        request: Request,
        why: String,
    },
    /// The CA has issued: saved before the download, which the next look does at once.
    Issued(Request),
}

/// What must be published for the names to be validated now.
pub(super) struct Round {
    /// The request, perhaps with a new random value.
    pub(super) request: Request,
    pub(super) records: Vec<Wanted>,
    /// The CA already considers the names valid: skip publishing.
    pub(super) done: Option<Answer>,
}

/// One thing to publish, for one validated name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wanted {
    /// The name being validated.
    pub(super) domain: String,
    pub(super) what: WantedKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WantedKind {
    /// A file under `http_root` (the path is relative to it).
    File {
        path: String,
        content: String,
    },
    Dns(DnsRecord),
}

/// The CA's verdict after being asked to check.
pub(super) enum Checked {
    /// Validation is complete; continue as the CA says.
    Done(Box<Answer>),
    /// Not yet: the CA's answer and the names it has not validated.
    NotYet {
        answer: String,
        unvalidated: Vec<String>,
    },
}

/// Reads what the attempt will renew (and checks that it can be renewed).
pub(super) async fn prepare(ctx: &mut Ctx<'_>, now: i64) -> Result<Prepared, Failure> {
    match &ctx.cert.issuer {
        crate::config::Issuer::CertCentral { .. } => certcentral::prepare(ctx, now).await,
        crate::config::Issuer::Acme { .. } => acme::prepare(ctx, now).await,
    }
}

/// What the CA's CAA check would hold the records against, if it can be known.
pub(super) async fn caa_issuer(
    ctx: &Ctx<'_>,
    prepared: &Prepared,
) -> Result<Option<crate::validation::caa::Issuer>, Failure> {
    match &prepared.target {
        Target::CertCentral(_) => Ok(Some(crate::validation::caa::Issuer::digicert())),
        Target::Acme(a) => acme::caa_issuer(ctx, a).await,
    }
}

/// Sends the request (not idempotent: the step before it is `Submitting`).
pub(super) async fn submit(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    csr_pem: &str,
) -> Result<Answer, Failure> {
    match &attempt.target {
        Target::CertCentral(o) => certcentral::submit(ctx, attempt, o, csr_pem).await,
        Target::Acme(a) => acme::submit(ctx, attempt, a).await,
    }
}

/// After a lost answer: the request the CA has for this attempt, if any.
pub(super) async fn reconcile(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
) -> Result<Option<Answer>, Failure> {
    match &attempt.target {
        Target::CertCentral(o) => certcentral::reconcile(ctx, attempt, o).await,
        Target::Acme(_) => Ok(None),
    }
}

/// One look at a pending request. `here` is the step to stay in on a passing failure.
pub(super) async fn poll(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    request: &Request,
    polls: u32,
    here: &Step,
) -> Result<Polled, Failure> {
    match &attempt.target {
        Target::CertCentral(o) => certcentral::poll(ctx, attempt, o, request, polls, here).await,
        Target::Acme(a) => acme::poll(ctx, attempt, a, request, here).await,
    }
}

/// What to publish now.
pub(super) async fn round(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    request: &Request,
    here: &Step,
) -> Result<Round, Failure> {
    match &attempt.target {
        Target::CertCentral(o) => certcentral::round(ctx, attempt, o, request, here).await,
        Target::Acme(a) => acme::round(ctx, attempt, a, request, here).await,
    }
}

/// Asks the CA to check (CertCentral: every time; ACME: the challenges once, then looks).
pub(super) async fn check(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    request: &Request,
    asked: bool,
    here: &Step,
) -> Result<Checked, Failure> {
    match &attempt.target {
        Target::CertCentral(o) => certcentral::check(ctx, attempt, o, request, here).await,
        Target::Acme(a) => acme::check(ctx, attempt, a, request, asked, here).await,
    }
}

/// Cancels the request of an abandoned attempt where the CA allows it; `Ok(false)` when there
/// is nothing to cancel (an ACME order simply expires).
pub(super) async fn abandon(engine: &Engine, attempt: &Attempt) -> Result<bool, super::Error> {
    match &attempt.target {
        Target::CertCentral(o) => certcentral::abandon(engine, o).await,
        Target::Acme(_) => Ok(false),
    }
}

/// Stays at `here` when `e` may pass (rate limit, server error, network), else starts over.
pub(super) fn retry_or_restart(e: impl Into<super::Error>, here: &Step) -> Failure {
    let e = e.into();
    let passing = match &e {
        super::Error::CertCentral(c) => c.is_retryable(),
        super::Error::Acme(a) => a.is_retryable(),
        super::Error::Validation(_) | super::Error::Hook(_) | super::Error::State(_) => true,
        _ => false,
    };
    Failure::new(e, if passing { here.clone() } else { Step::Idle })
}
