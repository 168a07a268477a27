//! Issued → Installed: the verified chain and the pending key become a new generation, made
//! live with one `rename(2)` ([`crate::install`]).

use std::path::{Path, PathBuf};

use tracing::info;

use super::{Attempt, Ctx, Error, Failure, Step, blocking, journal};
use crate::config::FileRole;
use crate::install::{self, Perms};
use crate::model::fmt_time;

impl Ctx<'_> {
    pub(super) async fn install(
        &mut self,
        attempt: Attempt,
        serial: String,
        not_after: i64,
        previous: Option<String>,
    ) -> Result<Step, Failure> {
        let here = Step::Issued {
            attempt: attempt.clone(),
            serial: serial.clone(),
            not_after,
            previous: previous.clone(),
        };
        let fail_here = |e: Error| Failure::new(e, here.clone());
        let key_pem = self
            .store
            .read(journal::KEY)
            .map_err(|e| fail_here(e.into()))?;
        let bundle = self
            .store
            .read(journal::BUNDLE)
            .map_err(|e| fail_here(e.into()))?;
        let chain = self
            .verify_bundle(&attempt, &bundle)
            .map_err(|e| Failure::new(e, Step::Idle))?;
        let cert = self.cert;
        let owner = install::fs::resolve_owner(cert.owner.as_deref(), cert.group.as_deref())
            .map_err(|m| fail_here(Error::Other(m)))?;
        let perms = Perms {
            owner,
            key_mode: cert.key_mode,
            cert_mode: cert.cert_mode,
        };
        let files: Vec<install::StagedFile> = cert
            .files
            .all()
            .into_iter()
            .map(|(role, _)| {
                let bytes = match role {
                    FileRole::Key => key_pem.clone(),
                    FileRole::Cert => chain.cert_pem(),
                    FileRole::Chain => chain.chain_pem(),
                    FileRole::Fullchain => chain.fullchain_pem(),
                    FileRole::Combined => format!("{}{}", key_pem, chain.fullchain_pem()),
                };
                (role, bytes.into_bytes(), perms.spec(role))
            })
            .collect();
        let live = self.engine.live(cert);
        let generation = serial.clone();
        let targets: Vec<(FileRole, PathBuf)> = cert
            .files
            .all()
            .iter()
            .map(|(r, p)| (*r, p.to_path_buf()))
            .collect();
        let gen2 = generation.clone();
        // An installation in progress completes even if the daemon is asked to stop.
        let activated = super::deploy::shielded(async move {
            blocking(move || {
                live.stage(&gen2, &files)?;
                let t: Vec<(FileRole, &Path)> =
                    targets.iter().map(|(r, p)| (*r, p.as_path())).collect();
                live.activate(&gen2, &t, owner)
            })
            .await
        })
        .await
        .map_err(fail_here)?
        .map_err(fail_here)?
        .map_err(|e| fail_here(e.into()))?;
        // After a crash between the switch and the journal, `activated` is our own generation.
        let previous = if activated.as_deref() == Some(generation.as_str()) {
            previous
        } else {
            activated
        };
        info!(cert = %cert.name, order_id = cert.order_id(), serial = %serial, not_after = %fmt_time(not_after), "installed the new certificate and key");
        Ok(Step::Installed {
            attempt,
            serial,
            not_after,
            generation,
            previous,
        })
    }
}
