//! From the file's layer ([`super::raw`]) to a [`Config`] that cannot be invalid: defaults
//! resolved (`[daemon]` → each certificate, relative paths → the config's folder), cross-field
//! rules checked, every error located at its key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawAcme, RawCertificate, RawConfig, RawDnsUpdate};
use super::{
    Acme, Argv, CertCentral, Certificate, Config, ConfigError, DEFAULT_URL, Daemon, DnsCheck,
    DnsPublisher, DnsUpdate, Eab, Files, Issuer, MAX_CONCURRENCY, RenewBefore, Validation,
    check_dns_name,
};
use crate::model::{ApiUrl, CertName, ChallengeType, DcvMethod, Method};

fn base_dir(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

pub(super) struct Resolver<'a> {
    path: &'a Path,
    source: &'a str,
    base: PathBuf,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(path: &'a Path, source: &'a str) -> Self {
        Resolver {
            path,
            source,
            base: base_dir(path),
        }
    }

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

    pub(super) fn resolve(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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
                    super::error::line_column(self.source, f.span().start),
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
            abandon_unconfigured_after: d
                .abandon_unconfigured_after
                .map_or(Duration::from_secs(24 * 3600), |p| p.0),
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
        // A private key readable or writable by every local user is refused (it is also
        // reachable through STATE/live, whatever protects the key_file folder).
        let key_mode = match &rc.key_mode {
            Some(m) if m.get_ref().0 & 0o007 != 0 => {
                return Err(self.err(
                    m,
                    format!(
                        "key_mode {:04o} lets every local user reach the private key: use 0600, or 0640 with group",
                        m.get_ref().0
                    ),
                ));
            }
            Some(m) => m.get_ref().0,
            None => 0o600,
        };
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
            key_mode,
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
            dns_check: rc
                .dns_propagation_check
                .unwrap_or(if rc.dns_resolver.is_some() {
                    DnsCheck::Resolver
                } else {
                    DnsCheck::Authoritative
                }),
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
