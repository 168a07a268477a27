//! Facts about certificates and keys: validity, names, public key, serial.

use x509_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::Error;

/// What certkeeper needs to know about one X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Uppercase hex, as CertCentral writes `serial_number`.
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    /// The subject common name, lowercased, if any.
    pub common_name: Option<String>,
    /// DNS subject alternative names, lowercased.
    pub dns_names: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    pub is_ca: bool,
    pub der: Vec<u8>,
}

impl CertFacts {
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::Parse {
            what: "certificate",
            detail: e.to_string(),
        })?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase);
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            serial: cert
                .raw_serial_as_string()
                .replace(':', "")
                .to_ascii_uppercase(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name,
            dns_names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            spki: cert.public_key().raw.to_vec(),
            is_ca: cert.is_ca(),
            der: der.to_vec(),
        })
    }

    /// Reads the first certificate of a PEM file's text.
    pub fn from_pem(text: &str) -> Result<Self, Error> {
        let ders = parse_certificates(text)?;
        let first = ders.first().ok_or_else(|| Error::Parse {
            what: "certificate file",
            detail: "no CERTIFICATE block found".into(),
        })?;
        Self::from_der(first)
    }

    /// The names missing from the certificate, for error messages.
    pub fn missing<'a>(&self, names: &'a [String]) -> Vec<&'a str> {
        names
            .iter()
            .filter(|n| !self.dns_names.iter().any(|d| d.eq_ignore_ascii_case(n)))
            .map(String::as_str)
            .collect()
    }

    /// Total validity period in seconds.
    pub fn lifetime_secs(&self) -> i64 {
        self.not_after - self.not_before
    }

    /// The certificate as PEM.
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }
}

/// Every `CERTIFICATE` block of a PEM text, as DER. `\r\n` line endings are accepted; any
/// block that is not valid PEM (for example a truncated one) is an error.
pub fn parse_certificates(text: &str) -> Result<Vec<Vec<u8>>, Error> {
    let normalized = text.replace("\r\n", "\n");
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(normalized.as_bytes()) {
        let block = block.map_err(|e| Error::Parse {
            what: "PEM",
            detail: e.to_string(),
        })?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    // A block whose END line was cut off is silently dropped by the iterator: count armour.
    let begins = normalized.matches("-----BEGIN CERTIFICATE-----").count();
    if begins != out.len() {
        return Err(Error::Parse {
            what: "PEM",
            detail: format!(
                "{begins} certificate blocks begin but {} are complete",
                out.len()
            ),
        });
    }
    Ok(out)
}

/// Whether the PEM private key `key_pem` belongs to the certificate `cert`.
///
/// Private key files carry their public half (PKCS#8 and SEC1 EC keys their public point, RSA
/// keys their modulus and exponent), so the common case is a comparison of bytes, like
/// `openssl x509 -modulus` against `openssl rsa -modulus`. Only a key without that (rare) is
/// loaded with the crypto library, which derives its public key (a scalar multiplication for
/// EC: the cost that made `status` slow over thousands of certificates).
pub fn key_matches(key_pem: &str, cert: &CertFacts) -> bool {
    match embedded_public_key(key_pem) {
        Some(EmbeddedKey::Ec(point)) => SubjectPublicKeyInfo::from_der(&cert.spki)
            .is_ok_and(|(_, spki)| spki.subject_public_key.data.as_ref() == point.as_slice()),
        Some(EmbeddedKey::Rsa { n, e }) => {
            SubjectPublicKeyInfo::from_der(&cert.spki).is_ok_and(|(_, spki)| {
                matches!(spki.parsed(), Ok(PublicKey::RSA(rsa))
                if unsigned(rsa.modulus) == unsigned(&n) && unsigned(rsa.exponent) == unsigned(&e))
            })
        }
        None => key_spki(key_pem).is_ok_and(|spki| spki == cert.spki),
    }
}

/// Whether `key_pem` belongs to `cert`, deriving the public key from the private one (so a
/// corrupted private half is noticed), once per key and certificate in this process: later
/// checks of the same pair reuse the verdict.
pub fn key_matches_verified(key_pem: &str, cert: &CertFacts) -> bool {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static VERIFIED: OnceLock<Mutex<HashSet<u64>>> = OnceLock::new();
    let id = crate::model::fnv1a(key_pem.bytes().chain([0]).chain(cert.spki.iter().copied()));
    let verified = VERIFIED.get_or_init(Default::default);
    if verified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&id)
    {
        return true;
    }
    let matches = key_spki(key_pem).is_ok_and(|spki| spki == cert.spki);
    if matches {
        let mut set = verified.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a daemon over a huge fleet re-derives after this many pairs.
        if set.len() > 100_000 {
            set.clear();
        }
        set.insert(id);
    }
    matches
}

enum EmbeddedKey {
    /// The EC public point (uncompressed or compressed, as written).
    Ec(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The public key written inside a PKCS#8 (RFC 5208), SEC1 (RFC 5915) or PKCS#1 (RFC 8017)
/// private key, if there is one.
fn embedded_public_key(key_pem: &str) -> Option<EmbeddedKey> {
    let block = ::pem::parse(key_pem).ok()?;
    match block.tag() {
        "PRIVATE KEY" => {
            let info = der_elements(block.contents())?;
            let algorithm = der_elements_raw(info.get(1)?.1)?;
            let inner = info.get(2)?.1;
            match algorithm.first()?.1 {
                OID_EC_PUBLIC_KEY => ec_private_key(inner),
                OID_RSA_ENCRYPTION => rsa_private_key(inner),
                _ => None,
            }
        }
        "EC PRIVATE KEY" => ec_private_key(block.contents()),
        "RSA PRIVATE KEY" => rsa_private_key(block.contents()),
        _ => None,
    }
}

/// ECPrivateKey: `SEQUENCE { version, privateKey, [0] parameters OPTIONAL, [1] publicKey OPTIONAL }`.
fn ec_private_key(der: &[u8]) -> Option<EmbeddedKey> {
    let (_, public) = der_elements(der)?
        .into_iter()
        .find(|(tag, _)| *tag == 0xa1)?;
    let (_, bits) = der_elements_raw(public)?
        .into_iter()
        .next()
        .filter(|(tag, _)| *tag == 0x03)?;
    // A BIT STRING's first byte counts the unused bits: 0 for a point.
    let (unused, point) = bits.split_first()?;
    (*unused == 0).then(|| EmbeddedKey::Ec(point.to_vec()))
}

/// RSAPrivateKey: `SEQUENCE { version, modulus, publicExponent, … }`.
fn rsa_private_key(der: &[u8]) -> Option<EmbeddedKey> {
    let parts = der_elements(der)?;
    Some(EmbeddedKey::Rsa {
        n: parts.get(1)?.1.to_vec(),
        e: parts.get(2)?.1.to_vec(),
    })
}

/// The (tag byte, content) of each element of the DER SEQUENCE `der`.
fn der_elements(der: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let (_, seq) = Any::from_der(der).ok()?;
    (seq.tag() == Tag::Sequence).then_some(())?;
    der_elements_raw(seq.data)
}

/// Splits concatenated DER values into (identifier octet, content).
fn der_elements_raw(mut der: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !der.is_empty() {
        let (rest, any) = Any::from_der(der).ok()?;
        let h = &any.header;
        let class = match h.class() {
            Class::Universal => 0x00,
            Class::Application => 0x40,
            Class::ContextSpecific => 0x80,
            Class::Private => 0xc0,
        };
        let tag = u8::try_from(h.tag().0).ok().filter(|t| *t < 0x1f)?;
        out.push((
            class | if h.is_constructed() { 0x20 } else { 0 } | tag,
            any.data,
        ));
        der = rest;
    }
    Some(out)
}

/// An unsigned big-endian integer without leading zero bytes.
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The DER SubjectPublicKeyInfo of a PEM private key (PKCS#8, or PKCS#1 RSA).
pub fn key_spki(key_pem: &str) -> Result<Vec<u8>, Error> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| Error::Parse {
        what: "private key",
        detail: e.to_string(),
    })?;
    Ok(rcgen::PublicKeyData::subject_public_key_info(&key))
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new(label, der),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyType, SignatureHash};

    /// The keys certkeeper writes carry their public half, so `key_matches` never needs the
    /// slow path for them.
    #[test]
    fn own_keys_take_the_fast_path() {
        for kt in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048] {
            let k = crate::crypto::new_key_and_csr(kt, SignatureHash::Sha256, "a.test", &[])
                .expect("key");
            assert!(embedded_public_key(&k.key_pem).is_some(), "{kt}");
        }
    }

    /// A key file whose private half was corrupted (its public half intact): the fast check
    /// trusts the written public key, the derived check notices.
    #[test]
    fn a_corrupted_private_half_is_noticed_by_the_derived_check() {
        for kt in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            let k = crate::crypto::new_key_and_csr(kt, SignatureHash::Sha256, "a.test", &[])
                .expect("key");
            let pair = rcgen::KeyPair::from_pem(&k.key_pem).expect("pair");
            let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
                .expect("params")
                .self_signed(&pair)
                .expect("cert");
            let facts = CertFacts::from_pem(&cert.pem()).expect("facts");
            assert!(key_matches(&k.key_pem, &facts) && key_matches_verified(&k.key_pem, &facts));

            let mut der = ::pem::parse(&k.key_pem).expect("pem").into_contents();
            let at = match kt {
                // ECPrivateKey: version 1, then the 32-byte scalar (RFC 5915).
                KeyType::EcdsaP256 => {
                    der.windows(5)
                        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
                        .expect("scalar")
                        + 10
                }
                // The last byte of the CRT coefficient, the key's last field (RFC 8017).
                _ => der.len() - 1,
            };
            der[at] ^= 0x5a;
            let corrupted = pem_encode("PRIVATE KEY", &der);
            assert!(
                key_matches(&corrupted, &facts),
                "{kt}: the fast path trusts the file"
            );
            assert!(
                !key_matches_verified(&corrupted, &facts),
                "{kt}: derived check"
            );
        }
    }
}
