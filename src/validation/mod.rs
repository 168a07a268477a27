//! Publishing what a CA asks to see, and taking it down again: the leaves that domain
//! validation (CertCentral's DCV tokens) and ACME challenges share.
//!
//! - [`webroot`]: a file under the web server's root (`http-token`, `http-01`), written through
//!   descriptors that never follow a symlink below the root.
//! - [`rfc2136`]: DNS records added and removed by dynamic update (RFC 2136) signed with a
//!   TSIG key (RFC 8945), the zone found by an SOA query when not configured.
//! - [`dns`]: looking a record up at a given server, to wait until it is visible.
//!
//! What to publish for which name is the issuer's business; running `dns_publish` hooks is the
//! engine's (it composes this module with [`crate::hooks`]). This module imports nothing from
//! the crate but [`crate::model`] and [`crate::safefs`].

pub mod caa;
pub mod dns;
pub mod rfc2136;
pub mod webroot;

use std::fmt;

use serde::{Deserialize, Serialize};

/// The DNS record types validation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordType {
    #[serde(rename = "TXT")]
    Txt,
    #[serde(rename = "CNAME")]
    Cname,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Txt => "TXT",
            Self::Cname => "CNAME",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A DNS record to publish: owner name (no trailing dot), type and value (TXT text, or the
/// CNAME target without trailing dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DnsRecord {
    pub name: String,
    pub rtype: RecordType,
    pub value: String,
}

impl fmt::Display for DnsRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}", self.name, self.rtype, self.value)
    }
}

/// Why publishing, removing or looking up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file under the web root.
    #[error("{0}")]
    File(String),
    /// The TSIG key file.
    #[error("{0}")]
    Key(String),
    /// The DNS server refused or did not answer.
    #[error("{0}")]
    Dns(String),
}
