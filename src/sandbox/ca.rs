//! The sandbox CA: a root, an intermediate under it, and leaves for CSR keys. Real X.509,
//! real signatures, the same chain shape as production (leaf → intermediate → root). With
//! `--state DIR` the root and intermediate (and their keys, 0600) are kept, so a user trusts the
//! root once.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use time::OffsetDateTime;

use crate::safefs::{Dir, Spec, Trust};

/// A root and an intermediate that signs leaves.
pub(super) struct Ca {
    pub(super) root_pem: String,
    pub(super) intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
    /// Signs nothing legitimate: used to inject a chain that does not verify.
    rogue: Issuer<'static, KeyPair>,
}

/// What a leaf is made of.
pub(super) struct LeafSpec<'a> {
    pub(super) spki_der: &'a [u8],
    pub(super) common_name: &'a str,
    pub(super) dns_names: &'a [String],
    /// Unix seconds.
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    /// Sign with the rogue intermediate instead (fault injection).
    pub(super) rogue: bool,
}

pub(super) struct Leaf {
    pub(super) der: Vec<u8>,
    pub(super) serial: String,
}

const ICA_NAME: &str = "certkeeper Sandbox TLS ICA";

fn time(unix: i64) -> OffsetDateTime {
    // Clamped to what X.509 can say (GeneralizedTime up to 9999).
    OffsetDateTime::from_unix_timestamp(unix.clamp(0, 253_402_300_799))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Ca {
    pub(super) fn new() -> Result<Self, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
        let root_params = ca_params(
            "certkeeper Sandbox Root CA",
            now,
            now + Duration::from_secs(20 * 365 * 86_400),
        );
        let root_cert = root_params.self_signed(&root_key)?;
        let root = Issuer::new(root_params, root_key);

        let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut int_params = ca_params(ICA_NAME, now, now + Duration::from_secs(10 * 365 * 86_400));
        int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let int_cert = int_params.signed_by(&int_key, &root)?;
        Ok(Self {
            root_pem: root_cert.pem(),
            intermediate_pem: int_cert.pem(),
            intermediate: Issuer::new(int_params, int_key),
            rogue: rogue()?,
        })
    }

    /// Loads the CA kept in `dir`, or makes one and keeps it there.
    pub(super) fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let d = Dir::create_all(dir, &Spec::mode(0o700), &Trust::default())?;
        let read = |name: &str| -> anyhow::Result<Option<String>> {
            match d.read_file(name, crate::safefs::PEM_LIMIT) {
                Ok((bytes, _)) => Ok(Some(String::from_utf8(bytes)?)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        if let (Some(root), Some(ica), Some(ica_key)) = (
            read("root.pem")?,
            read("intermediate.pem")?,
            read("intermediate.key")?,
        ) {
            let key = KeyPair::from_pem(&ica_key)?;
            let intermediate = Issuer::from_ca_cert_pem(&ica, key)?;
            return Ok(Self {
                root_pem: root,
                intermediate_pem: ica,
                intermediate,
                rogue: rogue()?,
            });
        }
        let ca = Self::new()?;
        d.write_atomic("root.pem", ca.root_pem.as_bytes(), &Spec::mode(0o644))?;
        d.write_atomic(
            "intermediate.pem",
            ca.intermediate_pem.as_bytes(),
            &Spec::mode(0o644),
        )?;
        d.write_atomic(
            "intermediate.key",
            ca.intermediate.key().serialize_pem().as_bytes(),
            &Spec::mode(0o600),
        )?;
        Ok(ca)
    }

    pub(super) fn issue(&self, spec: &LeafSpec<'_>) -> Result<Leaf, rcgen::Error> {
        let mut sans = vec![spec.common_name.to_owned()];
        sans.extend(
            spec.dns_names
                .iter()
                .filter(|n| *n != spec.common_name)
                .cloned(),
        );
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name);
        params.not_before = time(spec.not_before);
        params.not_after = time(spec.not_after);
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let spki = SubjectPublicKeyInfo::from_der(spec.spki_der)?;
        let issuer = if spec.rogue {
            &self.rogue
        } else {
            &self.intermediate
        };
        let cert = params.signed_by(&spki, issuer)?;
        Ok(Leaf {
            der: cert.der().to_vec(),
            serial: serial.iter().map(|b| format!("{b:02X}")).collect(),
        })
    }
}

/// Same subject as the real intermediate, other key: name chaining holds, signatures do not.
fn rogue() -> Result<Issuer<'static, KeyPair>, rcgen::Error> {
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(Issuer::new(
        ca_params(ICA_NAME, now, now + Duration::from_secs(86_400)),
        key,
    ))
}

fn ca_params(cn: &str, now: OffsetDateTime, until: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, "certkeeper sandbox");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - Duration::from_secs(3600);
    p.not_after = until;
    p
}
