//! certkeeper: keeps DigiCert CertCentral certificates renewed on the host that uses them.
//!
//! # Layout
//!
//! Data flows one way:
//!
//! ```text
//! config → scheduler → renewal (state machine) → certcentral / crypto → install → hooks, probe
//!                ↑                                                   daemon, cli, status, metrics, demo
//! ```
//!
//! - [`model`]: the shared vocabulary (names, ids, key types, the redacted API key). Imports
//!   nothing from the crate.
//! - [`config`]: the TOML file, raw then validated; every error has file, line and column.
//! - [`scheduler`]: pure "is it due, and when to look again" from facts and `now`.
//! - [`renewal`]: the per-certificate state machine and its durable journal; the only module
//!   that composes the leaves below.
//! - [`certcentral`]: the Services API client (retries, `Retry-After`, rate limiter, lenient JSON).
//! - [`crypto`]: keys and CSRs (rcgen), certificate facts and the pre-install gate (x509-parser).
//! - [`install`]: atomic generations of installed files, adoption, rollback.
//! - [`hooks`]: `deploy_check` and `reload` as argv, cleared environment, timeouts.
//! - [`probe`]: `verify_endpoint`'s TLS handshake.
//! - [`daemon`]: the event loop, signals, file watching, systemd notifications.
//! - [`status`], [`metrics`]: read-only views of journals and files.
//! - [`sandbox`]: a CertCentral-compatible CA for tests and the demo; it shares no code with
//!   [`certcentral`], so the two cannot agree on a mistake.
//! - [`cli`], [`demo`]: the commands; `cli` is the only user of `anyhow`.
//!
//! The leaves (`certcentral`, `crypto`, `install`, `hooks`, `probe`) import nothing from the
//! crate but `model` (the sandbox also uses `crypto` to make its own foreign CSRs).
//!
//! Unsafe code is denied. The two exceptions are one-line FFI calls in the daemon, each with
//! its SAFETY argument: registering the inotify descriptor with tokio (`daemon::watch`) and
//! `malloc_trim` (`daemon::heap`).
#![deny(unsafe_code)]

pub mod acme;
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
pub mod safefs;
pub mod sandbox;
pub mod scheduler;
pub mod status;
pub mod validation;
