//! Facts about certificates and keys: validity, names, public key, serial.

use x509_parser::prelude::*;

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

    /// Whether every name in `names` appears among the certificate's DNS SANs.
    pub fn covers(&self, names: &[String]) -> bool {
        names
            .iter()
            .all(|n| self.dns_names.iter().any(|d| d.eq_ignore_ascii_case(n)))
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
