//! The pre-install gate (SPEC.md "Crash safety"): nothing is installed unless the leaf's public
//! key is the new key, the leaf covers the expected names, it is within its validity period,
//! and the chain verifies leaf → intermediates (RFC 5280 §6.1, signatures and name chaining).

use x509_parser::prelude::*;

use super::Error;
use super::inspect::{CertFacts, parse_certificates};
use crate::model::fmt_time;

/// A leaf and its intermediates (no root), checked and ready to install.
#[derive(Debug, Clone)]
pub struct IssuedChain {
    pub leaf: CertFacts,
    /// Leaf's issuer first.
    pub intermediates: Vec<CertFacts>,
}

impl IssuedChain {
    pub fn cert_pem(&self) -> String {
        self.leaf.pem()
    }
    pub fn chain_pem(&self) -> String {
        self.intermediates.iter().map(CertFacts::pem).collect()
    }
    pub fn fullchain_pem(&self) -> String {
        self.cert_pem() + &self.chain_pem()
    }
}

/// Checks a PEM bundle from the CA against what was asked for. `now` is unix seconds.
pub fn check_issued(
    pem_text: &str,
    key_spki: &[u8],
    expected_names: &[String],
    now: i64,
) -> Result<IssuedChain, Error> {
    let certs = parse_certificates(pem_text)?
        .iter()
        .map(|der| CertFacts::from_der(der))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(Error::Rejected("the answer holds no certificate".into()));
    }
    // Pick the leaf by its key, not by position (certcentral-api.md §4).
    let leaf_at = certs.iter().position(|c| c.spki == key_spki).ok_or_else(|| {
        Error::Rejected(format!(
            "no certificate in the answer is for the new key (leaf serial {} has another public key)",
            certs[0].serial
        ))
    })?;
    let leaf = certs[leaf_at].clone();
    let missing = leaf.missing(expected_names);
    if !missing.is_empty() {
        return Err(Error::Rejected(format!(
            "leaf {} does not cover {}",
            leaf.serial,
            missing.join(", ")
        )));
    }
    if now < leaf.not_before || now >= leaf.not_after {
        return Err(Error::Rejected(format!(
            "leaf {} is not valid now (valid from {} until {})",
            leaf.serial,
            fmt_time(leaf.not_before),
            fmt_time(leaf.not_after)
        )));
    }
    let mut intermediates: Vec<CertFacts> = Vec::new();
    let mut current = leaf.clone();
    loop {
        if current.subject == current.issuer && !intermediates.is_empty() {
            // A self-signed root at the top: trust anchors are not installed.
            intermediates.pop();
            break;
        }
        let Some(issuer) = certs
            .iter()
            .enumerate()
            .find(|(i, c)| {
                *i != leaf_at && c.subject == current.issuer && !intermediates.contains(c)
            })
            .map(|(_, c)| c.clone())
        else {
            break;
        };
        verify_signature(&current, &issuer)?;
        if !issuer.is_ca {
            return Err(Error::Rejected(format!(
                "the chain does not verify: {} signed {} but is not a CA (no basicConstraints CA:TRUE, RFC 5280 §4.2.1.9)",
                issuer.subject, current.subject
            )));
        }
        intermediates.push(issuer.clone());
        current = issuer;
    }
    if intermediates.is_empty() {
        return Err(Error::Rejected(format!(
            "the chain does not verify: no certificate in the answer issued leaf {} (issuer {})",
            leaf.serial, leaf.issuer
        )));
    }
    Ok(IssuedChain {
        leaf,
        intermediates,
    })
}

fn verify_signature(child: &CertFacts, issuer: &CertFacts) -> Result<(), Error> {
    fn parse(der: &[u8]) -> Result<X509Certificate<'_>, Error> {
        X509Certificate::from_der(der)
            .map(|(_, c)| c)
            .map_err(|e| Error::Parse {
                what: "certificate",
                detail: e.to_string(),
            })
    }
    let (c, i) = (parse(&child.der)?, parse(&issuer.der)?);
    c.verify_signature(Some(i.public_key())).map_err(|e| {
        Error::Rejected(format!(
            "the chain does not verify: {} is not signed by {} ({e})",
            child.subject, issuer.subject
        ))
    })
}
