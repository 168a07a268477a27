//! Configuration: one TOML file, read in two layers.
//!
//! [`raw`] mirrors the file exactly (unknown keys are errors); [`Config::parse`] resolves
//! defaults (`[daemon]` → each `[[certificate]]`, relative paths → the config's directory) and
//! checks cross-field rules, producing a [`Config`] that cannot be invalid. Every error is a
//! [`ConfigError`] naming file, line and column. This module never touches the network and
//! never writes anything.

mod error;
mod raw;
pub mod value;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
use raw::{RawAcme, RawCertificate, RawConfig, RawDnsUpdate};
use toml::Spanned;
pub use value::{Argv, DnsServer, Endpoint, Mode, RenewBefore};

pub use crate::model::FileRole;
use crate::model::{
    ApiKey, ApiUrl, CertName, ChallengeType, DcvMethod, KeyType, Method, OrderId, SignatureHash,
};

/// Where the config lives unless `-c` or `$CERTKEEPER_CONFIG` say otherwise.
pub const DEFAULT_PATH: &str = "/etc/certkeeper/certkeeper.toml";
/// CertCentral's US instance (certcentral-api.md §1).
pub const DEFAULT_URL: &str = "https://www.digicert.com/services/v2";
/// The systemd credential name holding the API key (`LoadCredential=`).
pub const CREDENTIAL_NAME: &str = "certcentral-api-key";
/// The most renewals in progress at once.
pub const MAX_CONCURRENCY: usize = 256;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub certcentral: CertCentral,
    pub daemon: Daemon,
    pub acme: Vec<Acme>,
    pub dns_updates: Vec<DnsUpdate>,
    pub certificates: Vec<Certificate>,
}

/// `[certcentral]`: how to reach the API.
#[derive(Debug, Clone)]
pub struct CertCentral {
    pub url: ApiUrl,
    /// Explicit `api_key_file`, with the line and column of its value for error messages.
    api_key_file: Option<(PathBuf, (usize, usize))>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// `[daemon]`: scheduling and state.
#[derive(Debug, Clone, PartialEq)]
pub struct Daemon {
    pub state_dir: PathBuf,
    pub check_interval: Duration,
    pub renew_before: RenewBefore,
    pub jitter: Duration,
    pub poll_interval: Duration,
    pub poll_max: Duration,
    pub concurrency: usize,
    pub metrics_listen: Option<SocketAddr>,
}

/// `[[acme]]`: an ACME CA certificates can come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Acme {
    pub name: CertName,
    /// The directory URL (HTTPS; plain HTTP only to loopback).
    pub directory: ApiUrl,
    /// External Account Binding, sent only when the account is created.
    pub eab: Option<Eab>,
    pub contact: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub profile: Option<String>,
}

/// External Account Binding credentials: the key id and where its HMAC key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eab {
    pub kid: String,
    pub hmac_key_file: PathBuf,
}

/// `[[dns_update]]`: a server that takes RFC 2136 updates signed with a TSIG key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsUpdate {
    pub name: CertName,
    pub server: DnsServer,
    pub tsig_key_file: PathBuf,
    /// The zone to update; found with an SOA query when not set.
    pub zone: Option<String>,
}

/// Where a certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    /// A CertCentral order, renewed through the Services API.
    CertCentral { order_id: OrderId, method: Method },
    /// An ACME CA (`[[acme]]` of that name). `order` is DigiCert's `?action=…&orderId=N`.
    Acme {
        acme: String,
        challenge: ChallengeType,
        order: Option<(OrderId, Method)>,
    },
}

/// How the certificate's names are validated, and where records are published.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Validation {
    /// CertCentral's method (`none` for ACME certificates, which use their `challenge`).
    pub dcv_method: DcvMethod,
    pub http_root: Option<PathBuf>,
    pub dns: Option<DnsPublisher>,
    /// `dns-txt-token`: TXT at the name itself (`false`, DigiCert's documented place) or at
    /// `_dnsauth.NAME` (`true`).
    pub dnsauth_label: bool,
    pub dns_resolver: Option<DnsServer>,
    pub propagation_timeout: Duration,
}

/// How DNS records are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsPublisher {
    /// `dns_publish` / `dns_cleanup` commands, run once per record.
    Hooks {
        publish: Argv,
        cleanup: Option<Argv>,
    },
    /// RFC 2136 through the `[[dns_update]]` of this name.
    Update(String),
}

/// One `[[certificate]]`, with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    pub name: CertName,
    pub issuer: Issuer,
    pub common_name: Option<String>,
    pub dns_names: Option<Vec<String>>,
    pub key_type: KeyType,
    pub signature_hash: Option<SignatureHash>,
    pub server_platform: Option<i64>,
    pub skip_approval: bool,
    /// Cancel a pending reissue certkeeper did not start, instead of waiting for it.
    pub cancel_foreign_reissue: bool,
    pub comments: Option<String>,
    pub cert_validity_days: Option<u32>,
    pub renew_before: RenewBefore,
    pub rotate_key_after: Option<Duration>,
    pub files: Files,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub key_mode: u32,
    pub cert_mode: u32,
    pub deploy_check: Option<Argv>,
    pub reload: Option<Argv>,
    pub verify_endpoint: Option<Endpoint>,
    pub hook_timeout: Duration,
    /// Shared between consecutive certificates that validate alike (a fleet's usual case).
    pub validation: std::sync::Arc<Validation>,
    /// Run when the certificate enters `failed`, and again when it turns `STUCK`.
    pub on_failure: Option<Argv>,
    /// Run after a renewal is complete.
    pub on_renewed: Option<Argv>,
}

impl Certificate {
    /// The configured names, common name first, if the config names any (else the order's
    /// own are used).
    pub fn expected_names(&self) -> Option<Vec<String>> {
        if self.common_name.is_none() && self.dns_names.is_none() {
            return None;
        }
        Some(crate::model::name_list(
            self.common_name.clone(),
            self.dns_names.as_deref().unwrap_or_default(),
        ))
    }

    /// The CertCentral order the certificate is renewed on, if any.
    pub fn order_id(&self) -> Option<OrderId> {
        match &self.issuer {
            Issuer::CertCentral { order_id, .. } => Some(*order_id),
            Issuer::Acme { order, .. } => order.map(|(id, _)| id),
        }
    }

    /// Reissue or duplicate (for ACME: DigiCert's `action`, else reissue).
    pub fn method(&self) -> Method {
        match &self.issuer {
            Issuer::CertCentral { method, .. } => *method,
            Issuer::Acme { order, .. } => order.map_or(Method::Reissue, |(_, m)| m),
        }
    }

    /// The `[[acme]]` the certificate comes from, if it is an ACME certificate.
    pub fn acme(&self) -> Option<&str> {
        match &self.issuer {
            Issuer::Acme { acme, .. } => Some(acme),
            Issuer::CertCentral { .. } => None,
        }
    }

    /// `certcentral` or `acme:NAME`, for status and logs.
    pub fn issuer_label(&self) -> String {
        match &self.issuer {
            Issuer::CertCentral { .. } => "certcentral".into(),
            Issuer::Acme { acme, .. } => format!("acme:{acme}"),
        }
    }
}

/// The files one certificate is installed as. All paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub chain: Option<PathBuf>,
    pub fullchain: Option<PathBuf>,
    pub combined: Option<PathBuf>,
}

impl Files {
    /// Every configured file with its role, key first.
    pub fn all(&self) -> Vec<(FileRole, &Path)> {
        let mut v = vec![
            (FileRole::Key, self.key.as_path()),
            (FileRole::Cert, self.cert.as_path()),
        ];
        v.extend(self.chain.as_deref().map(|p| (FileRole::Chain, p)));
        v.extend(self.fullchain.as_deref().map(|p| (FileRole::Fullchain, p)));
        v.extend(self.combined.as_deref().map(|p| (FileRole::Combined, p)));
        v
    }
}

impl Config {
    /// Reads and validates the config at `path` (a regular file of bounded size).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = crate::safefs::read_to_string(path, crate::safefs::CONFIG_LIMIT)
            .map_err(|e| ConfigError::new(path, format!("cannot read the configuration: {e}")))?;
        Self::parse(path, &source)
    }

    /// Validates `source` as if read from `path` (relative paths resolve against its folder).
    pub fn parse(path: &Path, source: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(source).map_err(|e| {
            let message = e.message().trim_end().to_owned();
            match e.span() {
                Some(span) => ConfigError::at(path, source, span.start, message),
                None => ConfigError::new(path, message),
            }
        })?;
        Resolver {
            path,
            source,
            base: base_dir(path),
        }
        .resolve(raw)
    }

    pub fn certificate(&self, name: &str) -> Option<&Certificate> {
        self.certificates.iter().find(|c| c.name.as_str() == name)
    }

    pub fn acme(&self, name: &str) -> Option<&Acme> {
        self.acme.iter().find(|a| a.name.as_str() == name)
    }

    pub fn dns_update(&self, name: &str) -> Option<&DnsUpdate> {
        self.dns_updates.iter().find(|d| d.name.as_str() == name)
    }

    /// Whether any certificate is renewed through the CertCentral API (and needs its key).
    pub fn uses_certcentral(&self) -> bool {
        self.certificates
            .iter()
            .any(|c| matches!(c.issuer, Issuer::CertCentral { .. }))
    }
}

impl CertCentral {
    /// Finds the API key: `api_key_file` if configured, else the systemd credential
    /// `certcentral-api-key`, else `$CERTKEEPER_API_KEY`, else `/etc/certkeeper/api-key`.
    /// A key file readable by group or others is refused.
    pub fn api_key(&self, config_path: &Path) -> Result<ApiKey, ConfigError> {
        if let Some((file, position)) = &self.api_key_file {
            return read_key_file(file).map_err(|m| ConfigError {
                position: Some(*position),
                ..ConfigError::new(config_path, m)
            });
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let file = Path::new(&dir).join(CREDENTIAL_NAME);
            if file.exists() {
                return read_key_file(&file).map_err(|m| ConfigError::new(config_path, m));
            }
        }
        if let Ok(key) = std::env::var("CERTKEEPER_API_KEY")
            && !key.trim().is_empty()
        {
            return Ok(ApiKey::new(key.trim()));
        }
        read_key_file(Path::new("/etc/certkeeper/api-key")).map_err(|m| {
            ConfigError::new(
                config_path,
                format!("no CertCentral API key: set [certcentral] api_key_file, $CERTKEEPER_API_KEY or the systemd credential {CREDENTIAL_NAME:?} ({m})"),
            )
        })
    }
}

fn read_key_file(file: &Path) -> Result<ApiKey, String> {
    let text = crate::safefs::read_private(file, "API key file")?;
    match text.trim() {
        "" => Err(format!("API key file {} is empty", file.display())),
        key => Ok(ApiKey::new(key)),
    }
}

fn base_dir(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

struct Resolver<'a> {
    path: &'a Path,
    source: &'a str,
    base: PathBuf,
}

impl Resolver<'_> {
    fn err<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.source, spanned.span().start, message)
    }

    fn abs(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn resolve(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let cc = raw.certcentral;
        let url = match cc.url {
            Some(u) => u,
            None => DEFAULT_URL
                .parse()
                .map_err(|m: String| ConfigError::new(self.path, m))?,
        };
        let certcentral = CertCentral {
            url,
            api_key_file: cc.api_key_file.as_ref().map(|f| {
                (
                    self.abs(f.get_ref()),
                    error::line_column(self.source, f.span().start),
                )
            }),
            ca_file: cc.ca_file.as_deref().map(|p| self.abs(p)),
            timeout: cc.timeout.map_or(Duration::from_secs(30), |d| d.0),
        };

        let d = raw.daemon;
        let poll_interval = d
            .poll_interval
            .as_ref()
            .map_or(Duration::from_secs(30), |p| p.get_ref().0);
        let poll_max = d.poll_max.map_or(Duration::from_secs(3600), |p| p.0);
        if poll_interval > poll_max {
            let span = d.poll_interval.as_ref().ok_or_else(|| {
                ConfigError::new(
                    self.path,
                    "poll_max must not be shorter than poll_interval (30s)",
                )
            })?;
            return Err(self.err(span, "poll_interval must not be longer than poll_max"));
        }
        let concurrency = match &d.concurrency {
            Some(c) if *c.get_ref() == 0 => {
                return Err(self.err(c, "concurrency must be at least 1"));
            }
            Some(c) if *c.get_ref() > MAX_CONCURRENCY => {
                return Err(self.err(c, format!("concurrency must be at most {MAX_CONCURRENCY}")));
            }
            Some(c) => *c.get_ref(),
            None => 4,
        };
        let metrics_listen = match &d.metrics_listen {
            Some(m) => Some(m.get_ref().parse().map_err(|_| {
                self.err(
                    m,
                    format!(
                        "invalid metrics_listen {:?}; write IP:PORT like \"127.0.0.1:9469\"",
                        m.get_ref()
                    ),
                )
            })?),
            None => None,
        };
        let daemon = Daemon {
            state_dir: d
                .state_dir
                .as_deref()
                .map_or_else(|| PathBuf::from("/var/lib/certkeeper"), |p| self.abs(p)),
            check_interval: d
                .check_interval
                .map_or(Duration::from_secs(6 * 3600), |p| p.0),
            renew_before: d.renew_before.unwrap_or(RenewBefore::DEFAULT),
            jitter: d.jitter.map_or(Duration::from_secs(3600), |p| p.0),
            poll_interval,
            poll_max,
            concurrency,
            metrics_listen,
        };
        let defaults = Defaults {
            on_failure: d.on_failure,
            on_renewed: d.on_renewed,
        };

        let mut acme = Vec::with_capacity(raw.acme.len());
        for ra in raw.acme {
            if acme.iter().any(|a: &Acme| a.name == *ra.name.get_ref()) {
                return Err(self.err(
                    &ra.name,
                    format!("duplicate [[acme]] name {:?}", ra.name.get_ref().as_str()),
                ));
            }
            acme.push(self.acme(ra)?);
        }
        let mut dns_updates = Vec::with_capacity(raw.dns_update.len());
        for rd in raw.dns_update {
            if dns_updates
                .iter()
                .any(|u: &DnsUpdate| u.name == *rd.name.get_ref())
            {
                return Err(self.err(
                    &rd.name,
                    format!(
                        "duplicate [[dns_update]] name {:?}",
                        rd.name.get_ref().as_str()
                    ),
                ));
            }
            dns_updates.push(self.dns_update(rd)?);
        }

        let mut names: HashMap<CertName, ()> = HashMap::new();
        let mut paths: HashMap<PathBuf, String> = HashMap::new();
        let mut certificates: Vec<Certificate> = Vec::with_capacity(raw.certificates.len());
        for rc in raw.certificates {
            let name = rc.name.get_ref().clone();
            if names.insert(name.clone(), ()).is_some() {
                return Err(self.err(
                    &rc.name,
                    format!("duplicate certificate name {:?}", name.as_str()),
                ));
            }
            let spanned_files = [
                Some(&rc.cert_file),
                Some(&rc.key_file),
                rc.chain_file.as_ref(),
                rc.fullchain_file.as_ref(),
                rc.combined_file.as_ref(),
            ];
            for file in spanned_files.into_iter().flatten() {
                let path = self.abs(file.get_ref());
                if let Some(other) = paths.insert(path.clone(), name.to_string()) {
                    let whose = if other == name.as_str() {
                        "this certificate".to_owned()
                    } else {
                        format!("certificate {other:?}")
                    };
                    return Err(self.err(
                        file,
                        format!("file already used by {whose}: {}", path.display()),
                    ));
                }
            }
            let mut cert = self.certificate(rc, &daemon, &defaults, &acme, &dns_updates)?;
            if let Some(previous) = certificates.last()
                && previous.validation == cert.validation
            {
                cert.validation = std::sync::Arc::clone(&previous.validation);
            }
            certificates.push(cert);
        }
        Ok(Config {
            path: self.path.to_owned(),
            certcentral,
            daemon,
            acme,
            dns_updates,
            certificates,
        })
    }

    fn acme(&self, ra: RawAcme) -> Result<Acme, ConfigError> {
        let directory: ApiUrl = ra
            .directory
            .get_ref()
            .parse()
            .map_err(|m: String| self.err(&ra.directory, m.replace("url", "directory")))?;
        let eab = match (ra.eab_kid, ra.eab_hmac_key_file) {
            (Some(kid), Some(file)) => Some(Eab {
                kid: kid.into_inner(),
                hmac_key_file: self.abs(file.get_ref()),
            }),
            (None, None) => None,
            (Some(kid), None) => {
                return Err(self.err(&kid, "eab_kid needs eab_hmac_key_file"));
            }
            (None, Some(file)) => {
                return Err(self.err(&file, "eab_hmac_key_file needs eab_kid"));
            }
        };
        Ok(Acme {
            name: ra.name.into_inner(),
            directory,
            eab,
            contact: ra.contact,
            ca_file: ra.ca_file.as_deref().map(|p| self.abs(p)),
            profile: ra.profile,
        })
    }

    fn dns_update(&self, rd: RawDnsUpdate) -> Result<DnsUpdate, ConfigError> {
        let zone = match rd.zone {
            Some(z) => {
                let zone = z
                    .get_ref()
                    .trim()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                check_dns_name(&zone)
                    .map_err(|m| self.err(&z, m.replace("in dns_names", "as zone")))?;
                Some(zone)
            }
            None => None,
        };
        Ok(DnsUpdate {
            name: rd.name.into_inner(),
            server: rd.server,
            tsig_key_file: self.abs(rd.tsig_key_file.get_ref()),
            zone,
        })
    }

    fn certificate(
        &self,
        rc: RawCertificate,
        daemon: &Daemon,
        defaults: &Defaults,
        acme: &[Acme],
        dns_updates: &[DnsUpdate],
    ) -> Result<Certificate, ConfigError> {
        let dns_names = match &rc.dns_names {
            Some(names) => {
                let mut clean = Vec::new();
                for n in names.get_ref() {
                    let n = n.trim().to_ascii_lowercase();
                    check_dns_name(&n).map_err(|m| self.err(names, m))?;
                    if !clean.contains(&n) {
                        clean.push(n);
                    }
                }
                Some(clean)
            }
            None => None,
        };
        let common_name = match &rc.common_name {
            Some(c) => {
                let cn = c.get_ref().trim().to_ascii_lowercase();
                check_dns_name(&cn)
                    .map_err(|m| self.err(c, m.replace("in dns_names", "as common_name")))?;
                Some(cn)
            }
            None => None,
        };
        if let Some(days) = &rc.cert_validity_days
            && !(1..=3650).contains(days.get_ref())
        {
            return Err(self.err(days, "cert_validity_days must be between 1 and 3650"));
        }
        let issuer = self.issuer(&rc, acme, common_name.is_some())?;
        let validation = self.validation(&rc, &issuer, dns_updates)?;
        // Names are only known in advance when configured; the order's own are checked when
        // the renewal starts.
        let wildcard = common_name
            .iter()
            .chain(dns_names.iter().flatten())
            .find(|n| n.starts_with("*."));
        let http = match &issuer {
            Issuer::CertCentral { .. } => validation.dcv_method == DcvMethod::HttpToken,
            Issuer::Acme { challenge, .. } => *challenge == ChallengeType::Http01,
        };
        if let (Some(w), true) = (wildcard, http) {
            let at = rc
                .dns_names
                .as_ref()
                .map(|n| n.span())
                .or(rc.common_name.as_ref().map(|c| c.span()))
                .map_or(0, |s| s.start);
            return Err(ConfigError::at(
                self.path,
                self.source,
                at,
                format!(
                    "{w} is a wildcard: it cannot be validated over HTTP; use a DNS method (dns-txt-token, dns-cname-token, or challenge = \"dns-01\")"
                ),
            ));
        }
        let opt = |p: &Option<Spanned<PathBuf>>| p.as_ref().map(|p| self.abs(p.get_ref()));
        let files = Files {
            cert: self.abs(rc.cert_file.get_ref()),
            key: self.abs(rc.key_file.get_ref()),
            chain: opt(&rc.chain_file),
            fullchain: opt(&rc.fullchain_file),
            combined: opt(&rc.combined_file),
        };
        for (spanned, path) in [(&rc.cert_file, &files.cert), (&rc.key_file, &files.key)] {
            if path.file_name().is_none() {
                return Err(self.err(spanned, "must name a file"));
            }
        }
        Ok(Certificate {
            name: rc.name.into_inner(),
            issuer,
            common_name,
            dns_names,
            key_type: rc.key_type,
            signature_hash: rc.signature_hash,
            server_platform: rc.server_platform,
            skip_approval: rc.skip_approval,
            cancel_foreign_reissue: rc.cancel_foreign_reissue,
            comments: rc.comments,
            cert_validity_days: rc.cert_validity_days.map(Spanned::into_inner),
            renew_before: rc.renew_before.unwrap_or(daemon.renew_before),
            rotate_key_after: rc.rotate_key_after.map(|d| d.0),
            files,
            owner: rc.owner,
            group: rc.group,
            key_mode: rc.key_mode.map_or(0o600, |m| m.0),
            cert_mode: rc.cert_mode.map_or(0o644, |m| m.0),
            deploy_check: rc.deploy_check,
            reload: rc.reload,
            verify_endpoint: rc.verify_endpoint,
            hook_timeout: rc.hook_timeout.map_or(Duration::from_secs(60), |d| d.0),
            validation: std::sync::Arc::new(validation),
            on_failure: rc.on_failure.or_else(|| defaults.on_failure.clone()),
            on_renewed: rc.on_renewed.or_else(|| defaults.on_renewed.clone()),
        })
    }

    /// CertCentral (`order_id`) or ACME (`acme`, with DigiCert's optional `order_id`).
    fn issuer(
        &self,
        rc: &RawCertificate,
        acme: &[Acme],
        has_common_name: bool,
    ) -> Result<Issuer, ConfigError> {
        let method = rc.method.as_ref().map_or(Method::Reissue, |m| *m.get_ref());
        match &rc.acme {
            Some(a) => {
                if !acme.iter().any(|x| x.name.as_str() == a.get_ref()) {
                    return Err(self.err(
                        a,
                        format!("no [[acme]] named {:?} in this file", a.get_ref()),
                    ));
                }
                if !has_common_name {
                    return Err(self.err(a, "a certificate with acme needs common_name"));
                }
                if let Some(m) = &rc.dcv_method {
                    return Err(self.err(
                        m,
                        "dcv_method is for CertCentral orders; an ACME certificate validates with `challenge`",
                    ));
                }
                if let (Some(m), None) = (&rc.method, &rc.order_id) {
                    return Err(self.err(m, "method on an ACME certificate needs order_id"));
                }
                Ok(Issuer::Acme {
                    acme: a.get_ref().clone(),
                    challenge: rc
                        .challenge
                        .as_ref()
                        .map_or(ChallengeType::Http01, |c| *c.get_ref()),
                    order: rc.order_id.as_ref().map(|o| (*o.get_ref(), method)),
                })
            }
            None => {
                if let Some(c) = &rc.challenge {
                    return Err(self.err(
                        c,
                        "challenge is for ACME certificates (acme = \"…\"); a CertCentral order validates with dcv_method",
                    ));
                }
                let order_id = rc.order_id.as_ref().ok_or_else(|| {
                    self.err(&rc.name, "this certificate needs order_id (a CertCentral order) or acme (an [[acme]] CA)")
                })?;
                Ok(Issuer::CertCentral {
                    order_id: *order_id.get_ref(),
                    method,
                })
            }
        }
    }

    /// `dcv_method` / `challenge` and the publishers they need.
    fn validation(
        &self,
        rc: &RawCertificate,
        issuer: &Issuer,
        dns_updates: &[DnsUpdate],
    ) -> Result<Validation, ConfigError> {
        let dcv_method = rc
            .dcv_method
            .as_ref()
            .map_or(DcvMethod::None, |m| *m.get_ref());
        let (needs_http, needs_dns, what) = match issuer {
            Issuer::CertCentral { .. } => (
                dcv_method == DcvMethod::HttpToken,
                dcv_method.is_dns(),
                format!("dcv_method = \"{dcv_method}\""),
            ),
            Issuer::Acme { challenge, .. } => (
                *challenge == ChallengeType::Http01,
                *challenge == ChallengeType::Dns01,
                format!("challenge = \"{challenge}\""),
            ),
        };
        let at = rc
            .dcv_method
            .as_ref()
            .map(|m| m.span().start)
            .or(rc.challenge.as_ref().map(|c| c.span().start))
            .or(rc.acme.as_ref().map(|a| a.span().start))
            .unwrap_or_else(|| rc.name.span().start);
        let here = |m: String| ConfigError::at(self.path, self.source, at, m);
        if needs_http && rc.http_root.is_none() {
            return Err(here(format!(
                "{what} needs http_root (the folder the web server serves for these names)"
            )));
        }
        if let (false, Some(h)) = (needs_http, &rc.http_root) {
            return Err(self.err(h, format!("http_root is not used with {what}")));
        }
        let dns = match (&rc.dns_publish, &rc.dns_cleanup, &rc.dns_update) {
            (Some(_), _, Some(u)) => {
                return Err(self.err(
                    u,
                    "set either dns_publish/dns_cleanup or dns_update, not both",
                ));
            }
            (None, Some(c), _) => {
                return Err(self.err(c, "dns_cleanup needs dns_publish"));
            }
            (Some(p), c, None) => Some(DnsPublisher::Hooks {
                publish: p.get_ref().clone(),
                cleanup: c.as_ref().map(|c| c.get_ref().clone()),
            }),
            (None, None, Some(u)) => {
                if !dns_updates.iter().any(|d| d.name.as_str() == u.get_ref()) {
                    return Err(self.err(
                        u,
                        format!("no [[dns_update]] named {:?} in this file", u.get_ref()),
                    ));
                }
                Some(DnsPublisher::Update(u.get_ref().clone()))
            }
            (None, None, None) => None,
        };
        if needs_dns && dns.is_none() {
            return Err(here(format!(
                "{what} needs dns_publish (a command) or dns_update (an RFC 2136 server)"
            )));
        }
        if !needs_dns && let Some(p) = rc.dns_publish.as_ref() {
            return Err(self.err(p, format!("dns_publish is not used with {what}")));
        }
        if !needs_dns && let Some(u) = rc.dns_update.as_ref() {
            return Err(self.err(u, format!("dns_update is not used with {what}")));
        }
        let dnsauth_label = match &rc.dcv_dns_label {
            None => false,
            Some(l) if dcv_method != DcvMethod::DnsTxtToken => {
                return Err(self.err(
                    l,
                    "dcv_dns_label applies to dcv_method = \"dns-txt-token\" only",
                ));
            }
            Some(l) => match l.get_ref().as_str() {
                "" => false,
                "_dnsauth" => true,
                other => {
                    return Err(self.err(
                        l,
                        format!("dcv_dns_label {other:?}: write \"\" (TXT at the name itself) or \"_dnsauth\""),
                    ));
                }
            },
        };
        Ok(Validation {
            dcv_method,
            http_root: rc.http_root.as_ref().map(|h| self.abs(h.get_ref())),
            dns,
            dnsauth_label,
            dns_resolver: rc.dns_resolver.clone(),
            propagation_timeout: rc
                .dns_propagation_timeout
                .map_or(Duration::from_secs(600), |d| d.0),
        })
    }
}

/// `[daemon]` values that are defaults for every certificate.
struct Defaults {
    on_failure: Option<Argv>,
    on_renewed: Option<Argv>,
}

/// Checks a DNS name (or `*.` wildcard) as written in the configuration.
pub fn check_dns_name(name: &str) -> Result<(), String> {
    let body = name.strip_prefix("*.").unwrap_or(name);
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid DNS name {name:?} in dns_names"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certcentral::RetryPolicy;
    use proptest::prelude::*;

    /// Durations as a user (or an attacker) might write them: in and out of every bound.
    fn duration() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => (1u64..60, prop::sample::select(vec!["s", "m", "m", "h", "d"]))
                .prop_map(|(n, unit)| format!("{n}{unit}")),
            1 => (any::<u64>(), prop::sample::select(vec!["s", "m", "h", "d", "y", "ms", "ns"]))
                .prop_map(|(n, unit)| format!("{n}{unit}")),
            1 => any::<f64>().prop_map(|f| format!("{f}%")),
            1 => "\\PC{0,8}",
        ]
    }

    /// A config with each bounded value drawn from `duration()` or any integer, or left out
    /// (so that a fair share of the configs parse).
    fn config() -> impl Strategy<Value = String> {
        let keys = [
            "[certcentral]\ntimeout",
            "[daemon]\ncheck_interval",
            "renew_before",
            "jitter",
            "poll_interval",
            "poll_max",
            "[[certificate]]\nname = \"www\"\norder_id = 1\ncert_file = \"/c.pem\"\n\
             key_file = \"/k.pem\"\ndcv_method = \"dns-txt-token\"\ndns_publish = [\"true\"]\n\
             renew_before",
            "rotate_key_after",
            "hook_timeout",
            "dns_propagation_timeout",
        ];
        (
            prop::array::uniform10(prop::option::weighted(0.4, duration())),
            prop::option::weighted(0.5, prop_oneof![0i64..300, any::<i64>()]),
            prop::option::weighted(0.5, prop_oneof![0i64..4000, any::<i64>()]),
        )
            .prop_map(move |(values, concurrency, days)| {
                let mut text = String::new();
                for (key, value) in keys.iter().zip(values) {
                    // A section header is written even when its first key is left out.
                    let (header, key) = key.rsplit_once('\n').map_or(("", *key), |(h, k)| (h, k));
                    if !header.is_empty() {
                        text.push_str(header);
                        text.push('\n');
                    }
                    if let Some(v) = value {
                        text.push_str(&format!("{key} = {}\n", toml::Value::String(v)));
                    }
                    if key == "poll_max"
                        && let Some(n) = concurrency
                    {
                        text.push_str(&format!("concurrency = {n}\n"));
                    }
                }
                if let Some(n) = days {
                    text.push_str(&format!("cert_validity_days = {n}\n"));
                }
                text
            })
    }

    /// What the daemon needs of every value: timers that fit an `Instant` and a `SystemTime`, a
    /// semaphore tokio accepts, a check interval that cannot spin, a poll backoff that never
    /// panics, leads that never panic for any lifetime.
    fn assert_usable(c: &Config) {
        let d = &c.daemon;
        let now = std::time::Instant::now();
        assert!(d.check_interval >= Duration::from_secs(10));
        assert!((1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&d.concurrency));
        assert!(d.poll_interval > Duration::ZERO && d.poll_interval <= d.poll_max);
        let cert = &c.certificates[0];
        let durations = [
            c.certcentral.timeout,
            d.check_interval,
            d.jitter,
            d.poll_interval,
            d.poll_max,
            cert.hook_timeout,
            cert.validation.propagation_timeout,
            cert.rotate_key_after.unwrap_or_default(),
            cert.renew_before
                .lead(Duration::from_secs(value::TEN_YEARS)),
            d.renew_before.lead(Duration::from_secs(value::TEN_YEARS)),
        ];
        for t in durations {
            assert!(t <= Duration::from_secs(value::TEN_YEARS), "{t:?}");
            assert!(now.checked_add(t).is_some());
            assert!(std::time::SystemTime::now().checked_add(t).is_some());
        }
        let policy = RetryPolicy::new(d.poll_interval, d.poll_max);
        for attempt in [0, 1, 30, u32::MAX] {
            assert!(policy.delay(attempt, None, 0.5) <= d.poll_max);
        }
        assert!(
            cert.cert_validity_days
                .is_none_or(|n| (1..=3650).contains(&n))
        );
    }

    /// The largest value of every bound, together.
    #[test]
    fn every_bound_at_its_maximum_is_usable() {
        let text = "[certcentral]\ntimeout = \"10m\"\n[daemon]\ncheck_interval = \"7d\"\n\
            renew_before = \"10years\"\njitter = \"30d\"\npoll_interval = \"1d\"\n\
            poll_max = \"7d\"\nconcurrency = 256\n[[certificate]]\nname = \"www\"\n\
            order_id = 4294967295\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n\
            cert_validity_days = 3650\nrotate_key_after = \"10years\"\nhook_timeout = \"1d\"\n\
            dcv_method = \"dns-txt-token\"\ndns_publish = [\"true\"]\n\
            dns_propagation_timeout = \"1d\"\n";
        let c = Config::parse(Path::new("/etc/certkeeper.toml"), text).expect("parses");
        assert_usable(&c);
    }

    proptest! {
        // About one generated config in fourteen parses: enough cases for ~70 of them.
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Every config that parses has durations and counts the daemon can use: timers that
        /// fit an `Instant`, a semaphore tokio accepts, a check interval that cannot spin, a
        /// poll backoff that never panics, leads that never panic for any lifetime.
        #[test]
        fn what_parses_is_usable(text in config()) {
            let Ok(c) = Config::parse(Path::new("/etc/certkeeper.toml"), &text) else {
                return Ok(());
            };
            assert_usable(&c);
        }
    }
}
