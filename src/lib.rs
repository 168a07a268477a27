//! certkeeper: keeps DigiCert CertCentral certificates renewed on the host that uses them.
#![forbid(unsafe_code)]

pub mod certcentral;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod demo;
pub mod hooks;
pub mod install;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod renewal;
pub mod sandbox;
pub mod scheduler;
pub mod status;
