//! Writes benchmark data: `cargo bench --bench fixture -- DIR N`.
//!
//! DIR/certkeeper.toml configures N certificates, each installed (not due: valid 90 days from
//! now) as plain files under DIR/certs/cNNNNN/, signed by a throwaway CA. DIR/certbot/ holds the
//! same N certificates as certbot lineages (renewal/*.conf, live/ symlinks into archive/), for
//! `certbot renew` with nothing due. All certificates share one P-256 key: generating N keys
//! would measure key generation, not the tools.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [dir, n] = args.as_slice() else {
        return Err("usage: cargo bench --bench fixture -- DIR N".into());
    };
    let dir = Path::new(dir);
    let n: usize = n.parse()?;
    let now = time::OffsetDateTime::now_utc();

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "certkeeper bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.not_before = now - Duration::from_secs(3600);
    ca.not_after = now + Duration::from_secs(365 * 86_400);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let key_pem = key.serialize_pem();

    std::fs::create_dir_all(dir.join("certs"))?;
    std::fs::create_dir_all(dir.join("state"))?;
    for sub in ["renewal", "live", "archive", "work", "logs"] {
        std::fs::create_dir_all(dir.join("certbot").join(sub))?;
    }
    let mut config = String::from(
        "[certcentral]\nurl = \"https://127.0.0.1:9/services/v2\"\napi_key_file = \"api-key\"\n\n[daemon]\nstate_dir = \"state\"\n\n",
    );
    let abs = std::path::absolute(dir)?;
    for i in 0..n {
        let name = format!("c{i:05}");
        let host = format!("{name}.bench.test");
        let mut p = CertificateParams::new(vec![host.clone()])?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, host.as_str());
        p.not_before = now - Duration::from_secs(60);
        p.not_after = now + Duration::from_secs(90 * 86_400);
        p.serial_number = Some(rcgen::SerialNumber::from_slice(
            &(i as u64 + 1).to_be_bytes(),
        ));
        let cert = p.signed_by(&key, &issuer)?.pem();
        let d = dir.join("certs").join(&name);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("cert.pem"), &cert)?;
        write_private(&d.join("key.pem"), &key_pem)?;
        std::fs::write(d.join("chain.pem"), ca_cert.pem())?;
        let _ = write!(
            config,
            "[[certificate]]\nname = \"{name}\"\norder_id = {}\nskip_approval = true\ncert_file = \"certs/{name}/cert.pem\"\nkey_file = \"certs/{name}/key.pem\"\nchain_file = \"certs/{name}/chain.pem\"\n\n",
            100_000 + i
        );

        // certbot: archive/NAME/cert1.pem…, live/NAME/* → ../../archive/NAME/*1.pem, renewal/NAME.conf
        let cb = abs.join("certbot");
        let archive = cb.join("archive").join(&host);
        let live = cb.join("live").join(&host);
        std::fs::create_dir_all(&archive)?;
        std::fs::create_dir_all(&live)?;
        std::fs::write(archive.join("cert1.pem"), &cert)?;
        std::fs::write(archive.join("chain1.pem"), ca_cert.pem())?;
        std::fs::write(
            archive.join("fullchain1.pem"),
            format!("{cert}{}", ca_cert.pem()),
        )?;
        write_private(&archive.join("privkey1.pem"), &key_pem)?;
        for f in ["cert", "chain", "fullchain", "privkey"] {
            std::os::unix::fs::symlink(
                format!("../../archive/{host}/{f}1.pem"),
                live.join(format!("{f}.pem")),
            )?;
        }
        std::fs::write(
            cb.join("renewal").join(format!("{host}.conf")),
            format!(
                "version = 2.1.0\narchive_dir = {a}\ncert = {l}/cert.pem\nprivkey = {l}/privkey.pem\nchain = {l}/chain.pem\nfullchain = {l}/fullchain.pem\n\n[renewalparams]\nauthenticator = standalone\nserver = https://127.0.0.1:9/dir\naccount = 0123456789abcdef0123456789abcdef\n",
                a = archive.display(),
                l = live.display()
            ),
        )?;
    }
    std::fs::write(dir.join("certkeeper.toml"), config)?;
    write_private(&dir.join("api-key"), "bench-key\n")?;
    println!("wrote {n} certificates to {}", dir.display());
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}
