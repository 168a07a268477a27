//! The sandbox CA: a root, an intermediate under it, and leaves for CSR keys. Real X.509,
//! real signatures, the same chain shape as production (leaf → intermediate → root).

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use time::OffsetDateTime;

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
    pub(super) not_before: OffsetDateTime,
    pub(super) not_after: OffsetDateTime,
    /// Sign with the rogue intermediate instead (fault injection).
    pub(super) rogue: bool,
}

pub(super) struct Leaf {
    pub(super) pem: String,
    pub(super) serial: String,
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
        let mut int_params = ca_params(
            "certkeeper Sandbox TLS ICA",
            now,
            now + Duration::from_secs(10 * 365 * 86_400),
        );
        int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let int_cert = int_params.signed_by(&int_key, &root)?;

        let rogue_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        // Same subject as the real intermediate, other key: name chaining holds, signatures do not.
        let rogue_params = ca_params(
            "certkeeper Sandbox TLS ICA",
            now,
            now + Duration::from_secs(86_400),
        );
        Ok(Self {
            root_pem: root_cert.pem(),
            intermediate_pem: int_cert.pem(),
            intermediate: Issuer::new(int_params, int_key),
            rogue: Issuer::new(rogue_params, rogue_key),
        })
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
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
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
            pem: cert.pem(),
            serial: serial.iter().map(|b| format!("{b:02X}")).collect(),
        })
    }
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
