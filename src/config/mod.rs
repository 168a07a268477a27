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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
use raw::{RawCertificate, RawConfig};
use toml::Spanned;
pub use value::{Argv, Endpoint, Mode, RenewBefore};

pub use crate::model::FileRole;
use crate::model::{ApiKey, ApiUrl, CertName, KeyType, Method, OrderId, SignatureHash};

/// Where the config lives unless `-c` or `$CERTKEEPER_CONFIG` say otherwise.
pub const DEFAULT_PATH: &str = "/etc/certkeeper/certkeeper.toml";
/// CertCentral's US instance (certcentral-api.md §1).
pub const DEFAULT_URL: &str = "https://www.digicert.com/services/v2";
/// The systemd credential name holding the API key (`LoadCredential=`).
pub const CREDENTIAL_NAME: &str = "certcentral-api-key";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub certcentral: CertCentral,
    pub daemon: Daemon,
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

/// One `[[certificate]]`, with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    pub name: CertName,
    pub order_id: OrderId,
    pub method: Method,
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
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path)
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
    let meta = std::fs::metadata(file)
        .map_err(|e| format!("cannot read API key file {}: {e}", file.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "API key file {} is readable by group or others (mode {:04o}); run: chmod 600 {}",
            file.display(),
            mode & 0o7777,
            file.display()
        ));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read API key file {}: {e}", file.display()))?;
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

        let mut names: HashMap<CertName, ()> = HashMap::new();
        let mut paths: HashMap<PathBuf, String> = HashMap::new();
        let mut certificates = Vec::with_capacity(raw.certificates.len());
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
            certificates.push(self.certificate(rc, &daemon)?);
        }
        Ok(Config {
            path: self.path.to_owned(),
            certcentral,
            daemon,
            certificates,
        })
    }

    fn certificate(&self, rc: RawCertificate, daemon: &Daemon) -> Result<Certificate, ConfigError> {
        let dns_names = match rc.dns_names {
            Some(names) => {
                let mut clean = Vec::new();
                for n in names.get_ref() {
                    let n = n.trim().to_ascii_lowercase();
                    check_dns_name(&n).map_err(|m| self.err(&names, m))?;
                    if !clean.contains(&n) {
                        clean.push(n);
                    }
                }
                Some(clean)
            }
            None => None,
        };
        let common_name = rc.common_name.map(|c| c.trim().to_ascii_lowercase());
        if let Some(days) = &rc.cert_validity_days
            && *days.get_ref() == 0
        {
            return Err(self.err(days, "cert_validity_days must be at least 1"));
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
            order_id: rc.order_id,
            method: rc.method,
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
        })
    }
}

fn check_dns_name(name: &str) -> Result<(), String> {
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
