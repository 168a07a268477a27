//! Configuration: one TOML file, read in two layers.
//!
//! [`raw`] mirrors the file exactly (unknown keys are errors); [`Config::parse`] resolves (`resolve`)
//! defaults (`[daemon]` → each `[[certificate]]`, relative paths → the config's directory) and
//! checks cross-field rules, producing a [`Config`] that cannot be invalid. Every error is a
//! [`ConfigError`] naming file, line and column. This module never touches the network and
//! never writes anything.

mod error;
mod raw;
mod resolve;
pub mod value;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
use raw::RawConfig;
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
    /// How long a certificate removed from the configuration keeps a renewal in progress
    /// (time to carry a renamed certificate's state over) before the daemon abandons it.
    pub abandon_unconfigured_after: Duration,
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
    pub dns_check: DnsCheck,
    pub propagation_timeout: Duration,
}

impl Validation {
    /// `dns_resolver` as host and port, if set.
    pub fn resolver(&self) -> Option<(&str, u16)> {
        self.dns_resolver
            .as_ref()
            .map(|r| (r.0.host.as_str(), r.0.port))
    }
}

/// Where a DNS record must be visible before the CA is asked to check it
/// (`dns_propagation_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsCheck {
    /// At every address of every name server of the zone (found through `dns_resolver`, or
    /// the system's resolver): where the CA's vantage points look.
    #[default]
    Authoritative,
    /// At `dns_resolver` (or the system's resolver) alone: split-horizon DNS, or a primary
    /// whose secondaries do not matter. The default when `dns_resolver` is set.
    Resolver,
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
        resolve::Resolver::new(path, source).resolve(raw)
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
                return read_key_file(&file)
                    .map(|k| k.from_source(format!("the systemd credential {CREDENTIAL_NAME}")))
                    .map_err(|m| ConfigError::new(config_path, m));
            }
        }
        if let Ok(key) = std::env::var("CERTKEEPER_API_KEY")
            && !key.trim().is_empty()
        {
            return Ok(ApiKey::new(key.trim()).from_source("$CERTKEEPER_API_KEY"));
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
        key => Ok(ApiKey::new(key).from_source(file.display().to_string())),
    }
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

    /// DNS is checked at every authoritative server unless `dns_resolver` names one server;
    /// `dns_propagation_check` says either way explicitly.
    #[test]
    fn dns_propagation_check_defaults_to_authoritative() {
        let check = |extra: &str| {
            let text = format!(
                "[[certificate]]\nname = \"www\"\norder_id = 1\ncert_file = \"/c.pem\"\n\
                 key_file = \"/k.pem\"\ndcv_method = \"dns-txt-token\"\n\
                 dns_publish = [\"true\"]\n{extra}"
            );
            Config::parse(Path::new("/etc/certkeeper.toml"), &text)
                .map(|c| c.certificates[0].validation.dns_check)
        };
        assert_eq!(check("").expect("parses"), DnsCheck::Authoritative);
        let at = "dns_resolver = \"192.0.2.53\"\n";
        assert_eq!(check(at).expect("parses"), DnsCheck::Resolver);
        let both = format!("{at}dns_propagation_check = \"authoritative\"\n");
        assert_eq!(check(&both).expect("parses"), DnsCheck::Authoritative);
        let e = check("dns_propagation_check = \"everywhere\"\n").expect_err("refused");
        assert!(e.to_string().contains("dns_propagation_check"), "{e}");
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
