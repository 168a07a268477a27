//! A serde mirror of the TOML file, exactly as written. Unknown keys are errors. Fields that
//! take part in cross-field checks keep their span (`Spanned`) so errors can point at them.
//! Every duration carries its bounds in its type ([`Dur`]), so a value out of range is an error
//! at its own line and column.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::value::{Argv, DAY, DnsServer, Dur, Endpoint, Mode, RenewBefore, TEN_YEARS};
use crate::model::{
    ApiUrl, CertName, ChallengeType, DcvMethod, KeyType, Method, OrderId, SignatureHash,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub certcentral: RawCertCentral,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub acme: Vec<RawAcme>,
    #[serde(default)]
    pub dns_update: Vec<RawDnsUpdate>,
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertCentral {
    pub url: Option<ApiUrl>,
    pub api_key_file: Option<Spanned<PathBuf>>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<Dur<1, 600>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub state_dir: Option<PathBuf>,
    pub check_interval: Option<Dur<10, { 7 * DAY }>>,
    pub renew_before: Option<RenewBefore>,
    pub jitter: Option<Dur<0, { 30 * DAY }>>,
    pub poll_interval: Option<Spanned<Dur<1, DAY>>>,
    pub poll_max: Option<Dur<1, { 7 * DAY }>>,
    pub concurrency: Option<Spanned<usize>>,
    pub metrics_listen: Option<Spanned<String>>,
    pub on_failure: Option<Argv>,
    pub on_renewed: Option<Argv>,
    pub abandon_unconfigured_after: Option<Dur<0, { 30 * DAY }>>,
}

/// `[[acme]]`: an ACME CA (SPEC.md "ACME issuers").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub name: Spanned<CertName>,
    pub directory: Spanned<String>,
    pub eab_kid: Option<Spanned<String>>,
    pub eab_hmac_key_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub contact: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub profile: Option<String>,
}

/// `[[dns_update]]`: an RFC 2136 server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDnsUpdate {
    pub name: Spanned<CertName>,
    pub server: DnsServer,
    pub tsig_key_file: Spanned<PathBuf>,
    pub zone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    pub name: Spanned<CertName>,
    pub order_id: Option<Spanned<OrderId>>,
    pub method: Option<Spanned<Method>>,
    pub acme: Option<Spanned<String>>,
    pub challenge: Option<Spanned<ChallengeType>>,
    pub common_name: Option<Spanned<String>>,
    pub dns_names: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub key_type: KeyType,
    pub signature_hash: Option<SignatureHash>,
    pub server_platform: Option<i64>,
    #[serde(default)]
    pub skip_approval: bool,
    #[serde(default)]
    pub cancel_foreign_reissue: bool,
    pub comments: Option<String>,
    pub cert_validity_days: Option<Spanned<u32>>,
    pub renew_before: Option<RenewBefore>,
    pub rotate_key_after: Option<Dur<DAY, TEN_YEARS>>,
    pub cert_file: Spanned<PathBuf>,
    pub key_file: Spanned<PathBuf>,
    pub chain_file: Option<Spanned<PathBuf>>,
    pub fullchain_file: Option<Spanned<PathBuf>>,
    pub combined_file: Option<Spanned<PathBuf>>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub key_mode: Option<Spanned<Mode>>,
    pub cert_mode: Option<Mode>,
    pub deploy_check: Option<Argv>,
    pub reload: Option<Argv>,
    pub verify_endpoint: Option<Endpoint>,
    pub hook_timeout: Option<Dur<1, DAY>>,
    pub on_failure: Option<Argv>,
    pub on_renewed: Option<Argv>,
    pub dcv_method: Option<Spanned<DcvMethod>>,
    pub http_root: Option<Spanned<PathBuf>>,
    pub dns_publish: Option<Spanned<Argv>>,
    pub dns_cleanup: Option<Spanned<Argv>>,
    pub dns_update: Option<Spanned<String>>,
    pub dcv_dns_label: Option<Spanned<String>>,
    pub dns_resolver: Option<DnsServer>,
    pub dns_propagation_check: Option<super::DnsCheck>,
    pub dns_propagation_timeout: Option<Dur<0, DAY>>,
}
