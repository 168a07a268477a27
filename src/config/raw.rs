//! A serde mirror of the TOML file, exactly as written. Unknown keys are errors. Fields that
//! take part in cross-field checks keep their span (`Spanned`) so errors can point at them.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::value::{Argv, Endpoint, HumanDuration, Mode, RenewBefore};
use crate::model::{ApiUrl, CertName, KeyType, Method, OrderId, SignatureHash};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub certcentral: RawCertCentral,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertCentral {
    pub url: Option<ApiUrl>,
    pub api_key_file: Option<Spanned<PathBuf>>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub state_dir: Option<PathBuf>,
    pub check_interval: Option<HumanDuration>,
    pub renew_before: Option<RenewBefore>,
    pub jitter: Option<HumanDuration>,
    pub poll_interval: Option<Spanned<HumanDuration>>,
    pub poll_max: Option<HumanDuration>,
    pub concurrency: Option<Spanned<usize>>,
    pub metrics_listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    pub name: Spanned<CertName>,
    pub order_id: OrderId,
    #[serde(default)]
    pub method: Method,
    pub common_name: Option<String>,
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
    pub rotate_key_after: Option<HumanDuration>,
    pub cert_file: Spanned<PathBuf>,
    pub key_file: Spanned<PathBuf>,
    pub chain_file: Option<Spanned<PathBuf>>,
    pub fullchain_file: Option<Spanned<PathBuf>>,
    pub combined_file: Option<Spanned<PathBuf>>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub key_mode: Option<Mode>,
    pub cert_mode: Option<Mode>,
    pub deploy_check: Option<Argv>,
    pub reload: Option<Argv>,
    pub verify_endpoint: Option<Endpoint>,
    pub hook_timeout: Option<HumanDuration>,
}
