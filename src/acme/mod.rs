//! ACME (RFC 8555) issuers: accounts, orders, challenges, renewal information (RFC 9773).
//! This module knows nothing of config files or state; the renewal engine stores what it
//! returns.

use std::collections::HashMap;
use std::time::Duration;

use crate::config;

/// An error from an ACME CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        false
    }

    pub fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The ACME CAs of a configuration, by name.
#[derive(Default)]
pub struct Registry {
    issuers: HashMap<String, config::Acme>,
}

impl Registry {
    pub fn from_config(config: &config::Config) -> Result<Self, config::ConfigError> {
        Ok(Self {
            issuers: config
                .acme
                .iter()
                .map(|a| (a.name.to_string(), a.clone()))
                .collect(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&config::Acme> {
        self.issuers.get(name)
    }
}
