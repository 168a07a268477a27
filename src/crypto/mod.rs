//! Keys, CSRs and certificate facts: rcgen creates, x509-parser reads and verifies.
//!
//! This module is pure computation over bytes: it never reads files or talks to the network.
//! RSA generation is slow (seconds for 4096 bits); callers run it on a blocking thread.

mod inspect;
mod verify;

pub use inspect::{CertFacts, key_matches, key_matches_verified, key_spki, parse_certificates};
pub use verify::{IssuedChain, check_issued};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize, SignatureAlgorithm,
};

use crate::model::{KeyType, SignatureHash};

/// What went wrong with a key, a CSR or a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Key generation or CSR signing failed inside the crypto library.
    #[error("cannot {what}: {source}")]
    Rcgen {
        what: &'static str,
        source: rcgen::Error,
    },
    /// A PEM or DER blob could not be parsed.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: &'static str, detail: String },
    /// An issued certificate failed the pre-install checks.
    #[error("refusing the issued certificate: {0}")]
    Rejected(String),
}

/// A fresh private key and the CSR that carries its public half.
pub struct NewKey {
    /// PKCS#8 PEM (`BEGIN PRIVATE KEY`). Write it 0600.
    pub key_pem: String,
    pub csr_pem: String,
    /// DER SubjectPublicKeyInfo of the key, for matching the issued leaf.
    pub spki: Vec<u8>,
}

/// Generates a key of `key_type` and a CSR for `common_name` with `names` as SANs.
///
/// For RSA the CSR is signed with `hash`; ECDSA keys sign with their curve's hash (P-256 with
/// SHA-256, P-384 with SHA-384). The certificate's own hash is asked of the CA separately.
pub fn new_key_and_csr(
    key_type: KeyType,
    hash: SignatureHash,
    common_name: &str,
    names: &[String],
) -> Result<NewKey, Error> {
    let key = generate_key(key_type, hash)?;
    let csr_pem = csr(&key, common_name, names)?;
    Ok(NewKey {
        key_pem: key.serialize_pem(),
        csr_pem,
        spki: rcgen::PublicKeyData::subject_public_key_info(&key),
    })
}

/// Generates a private key.
pub fn generate_key(key_type: KeyType, hash: SignatureHash) -> Result<KeyPair, Error> {
    let rsa_alg: &'static SignatureAlgorithm = match hash {
        SignatureHash::Sha256 => &rcgen::PKCS_RSA_SHA256,
        SignatureHash::Sha384 => &rcgen::PKCS_RSA_SHA384,
        SignatureHash::Sha512 => &rcgen::PKCS_RSA_SHA512,
    };
    let result = match key_type {
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(rsa_alg, RsaKeySize::_2048),
        KeyType::Rsa3072 => KeyPair::generate_rsa_for(rsa_alg, RsaKeySize::_3072),
        KeyType::Rsa4096 => KeyPair::generate_rsa_for(rsa_alg, RsaKeySize::_4096),
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
    };
    result.map_err(|source| Error::Rcgen {
        what: "generate a private key",
        source,
    })
}

/// A PEM CSR for `common_name`, listing `names` (the common name included) as DNS SANs.
pub fn csr(key: &KeyPair, common_name: &str, names: &[String]) -> Result<String, Error> {
    let mut sans = vec![common_name.to_owned()];
    sans.extend(names.iter().filter(|n| *n != common_name).cloned());
    let rc = |source| Error::Rcgen {
        what: "build the CSR",
        source,
    };
    let mut params = CertificateParams::new(sans).map_err(rc)?;
    // rcgen's default subject is "CN=rcgen self signed cert" (STACK.md §9.3).
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(rc)
}

/// Normalises a PEM for comparison: the base64 body only, without armour or whitespace.
/// CertCentral may re-wrap a CSR or send it on one line (certcentral-api.md §2.1, §3.3).
pub fn pem_body(pem: &str) -> String {
    let mut rest = pem;
    let mut body = String::with_capacity(pem.len());
    while let Some(start) = rest.find("-----") {
        body.push_str(&rest[..start]);
        let after = &rest[start + 5..];
        rest = after.find("-----").map_or("", |end| &after[end + 5..]);
    }
    body.push_str(rest);
    body.retain(|c| !c.is_whitespace());
    body
}

/// A CSR for an existing PEM private key.
pub fn csr_for_key_pem(
    key_pem: &str,
    common_name: &str,
    names: &[String],
) -> Result<String, Error> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| Error::Parse {
        what: "private key",
        detail: e.to_string(),
    })?;
    csr(&key, common_name, names)
}

/// The DER SubjectPublicKeyInfo of a PEM CSR, however its armour and lines are wrapped.
pub fn csr_spki(text: &str) -> Result<Vec<u8>, Error> {
    use x509_parser::prelude::FromDer;
    let body = pem_body(text);
    let wrapped: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        wrapped.join("\n")
    );
    let parse = |detail: String| Error::Parse {
        what: "CSR",
        detail,
    };
    let block = ::pem::parse(pem).map_err(|e| parse(e.to_string()))?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(block.contents())
            .map_err(|e| parse(e.to_string()))?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_carries_names_and_key() {
        let names = vec!["www.example.test".to_owned()];
        let k = new_key_and_csr(
            KeyType::EcdsaP256,
            SignatureHash::Sha256,
            "example.test",
            &names,
        )
        .expect("keygen");
        let parsed =
            rcgen::CertificateSigningRequestParams::from_pem(&k.csr_pem).expect("csr parses");
        let sans: Vec<String> = parsed
            .params
            .subject_alt_names
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
        assert_eq!(sans.len(), 2, "{sans:?}");
        assert!(!rcgen::PublicKeyData::der_bytes(&parsed.public_key).is_empty());
        assert_eq!(key_spki(&k.key_pem).expect("key parses"), k.spki);
        let one_line = k.csr_pem.replace('\n', "");
        assert_eq!(csr_spki(&one_line).expect("one-line CSR parses"), k.spki);
    }

    #[test]
    fn pem_body_ignores_wrapping() {
        let a =
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\nBBBB\n-----END CERTIFICATE REQUEST-----\n";
        let b = "-----BEGIN CERTIFICATE REQUEST-----AAAABBBB-----END CERTIFICATE REQUEST-----";
        assert_eq!(pem_body(a), "AAAABBBB");
        assert_eq!(pem_body(a), pem_body(b));
    }
}
