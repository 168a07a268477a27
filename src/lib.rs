//! certkeeper: keeps DigiCert CertCentral and ACME certificates renewed on the host that uses
//! them, completing domain validation itself.
//!
//! # Layout
//!
//! Data flows one way:
//!
//! ```text
//! config → scheduler → renewal (state machine) → issuers: certcentral | acme
//!                                              → validation publishers (webroot, DNS)
//!                                              → crypto → install → hooks, probe
//!          daemon, cli, status, metrics, demo read and drive the above
//! ```
//!
//! - [`model`]: the shared vocabulary (names, ids, key types, the redacted API key). Imports
//!   nothing from the crate.
//! - [`config`]: the TOML file, raw then validated; every error has file, line and column, and
//!   every duration and count is bounded at parse time.
//! - [`scheduler`]: pure "is it due, and when to look again" from facts and `now` (lifetime
//!   share, half-life cap, key rotation, ARI windows).
//! - [`renewal`]: the per-certificate state machine (drawn in `renewal/step.rs`), split by
//!   phase, and its durable journal; the only module that composes the leaves below. Its
//!   `issuer` module is the seam between the engine and the two issuers.
//! - [`certcentral`]: the Services API client (retries, `Retry-After`, rate limiter, lenient
//!   JSON, bounded answers).
//! - [`acme`]: ACME CAs through instant-acme (accounts with EAB, orders, ARI, profiles).
//! - [`validation`]: where validation records go: a file under a web root, RFC 2136 updates
//!   with TSIG, DNS lookups for propagation. Knows nothing of CertCentral or ACME.
//! - [`crypto`]: keys and CSRs (rcgen), certificate facts and the pre-install gate (x509-parser).
//! - [`install`]: atomic generations of installed files, adoption, rollback.
//! - [`safefs`]: file operations through descriptors that never follow symlinks where it
//!   matters, bounded reads that refuse FIFOs and devices, private files 0600 from the start.
//! - [`hooks`]: commands as argv, cleared environment, timeouts, bounded output.
//! - [`probe`]: `verify_endpoint`'s TLS handshake.
//! - [`daemon`]: the event loop, signals, file watching, systemd notifications.
//! - [`status`], [`metrics`]: read-only views of journals and files.
//! - [`sandbox`]: a CertCentral-compatible CA for tests and the demo; it shares no code with
//!   [`certcentral`] or [`validation`], so they cannot agree on a mistake.
//! - [`cli`], [`demo`]: the commands; `cli` is the only user of `anyhow`.
//!
//! The leaves (`certcentral`, `acme`, `validation`, `crypto`, `install`, `safefs`, `hooks`,
//! `probe`) import nothing from the crate but `model` and `safefs` (and `acme` its
//! `[[acme]]` table from `config`); the sandbox also uses `crypto` to make foreign CSRs.
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
