//! The ACME account: one per `[[acme]]` and CA directory, P-256, stored 0600 in
//! `STATE/acme/NAME/account-HASH.json` once the CA has answered newAccount (EAB sent only
//! then), restored from there afterwards.

use std::path::PathBuf;

use tracing::info;

use super::retry_or_restart;
use crate::renewal::step::AcmeTarget;
use crate::renewal::{Ctx, Engine, Error, Failure, Step};
use crate::safefs::{Dir, Spec, Trust};

pub(super) fn account_dir(engine: &Engine, name: &str) -> PathBuf {
    engine.daemon.state_dir.join("acme").join(name)
}

/// Where older versions kept an `[[acme]]`'s one account.
const LEGACY_ACCOUNT: &str = "account.json";

/// A directory URL less its query: DigiCert's `?action=…&orderId=N` directories belong to one
/// account, another URL is another CA (or its staging).
fn directory_base(directory: &str) -> &str {
    directory.split('?').next().unwrap_or(directory)
}

/// The file holding the account for `directory`: one per CA directory, as certbot keeps one
/// account per server. A changed `directory` (staging to production, another CA) gets an
/// account of its own; the old one stays, for going back.
fn account_name(directory: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        directory_base(directory).as_bytes(),
    );
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("account-{hex}.json")
}

/// The stored credentials for `directory`: its own file, or the one file of older versions
/// when that was made at the same directory.
pub(super) fn stored_account(
    dir: &std::path::Path,
    directory: &str,
) -> Result<Option<String>, Error> {
    let folder = match Dir::open(dir, &Trust::default()) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Other(format!("cannot read the ACME account: {e}"))),
    };
    let read = |file: &str| match folder.read_file(file, crate::safefs::SECRET_LIMIT) {
        Ok((bytes, _)) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Other(format!("cannot read the ACME account: {e}"))),
    };
    if let Some(json) = read(&account_name(directory))? {
        return Ok(Some(json));
    }
    let made_here = |json: &String| {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get("directory")?.as_str().map(str::to_owned))
            .is_some_and(|d| directory_base(&d) == directory_base(directory))
    };
    Ok(read(LEGACY_ACCOUNT)?.filter(made_here))
}

/// The account for `directory`: restored from the stored credentials, or created and stored
/// (0600) at once.
pub(super) async fn account(
    engine: &Engine,
    name: &str,
    directory: &str,
) -> Result<instant_acme::Account, Error> {
    let issuer = engine
        .acme
        .get(name)
        .ok_or_else(|| Error::Config(format!("no [[acme]] named {name:?}")))?;
    let dir = account_dir(engine, name);
    let stored = stored_account(&dir, directory)?;
    let (account, created) = issuer.account(directory, stored.as_deref()).await?;
    if let Some(json) = created {
        let trust = Trust::default();
        Dir::create_all(&engine.daemon.state_dir, &Spec::mode(0o755), &trust)
            .and_then(|_| Dir::create_all(&dir, &Spec::mode(0o700), &trust))
            .and_then(|d| {
                d.write_atomic(account_name(directory), json.as_bytes(), &Spec::mode(0o600))
            })
            .map_err(|e| {
                Error::Other(format!(
                    "cannot store the ACME account in {}: {e}",
                    dir.display()
                ))
            })?;
        info!(acme = name, directory = directory_base(directory), id = %account.id(), "created the ACME account");
    }
    Ok(account)
}

pub(super) async fn account_for(
    ctx: &Ctx<'_>,
    a: &AcmeTarget,
    here: &Step,
) -> Result<instant_acme::Account, Failure> {
    account(ctx.engine, &a.acme, &a.directory)
        .await
        .map_err(|e| retry_or_restart(e, here))
}
