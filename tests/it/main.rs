#![allow(unreachable_pub)]
//! The integration tests: the real engine, daemon and binary against the real sandbox, in
//! process on 127.0.0.1:0, checked with openssl. One crate, one module per behaviour.

mod acme;
mod cli;
mod common;
mod config;
mod contract;
mod daemon;
mod dcv;
mod deploy;
mod fixtures;
mod fleet;
mod keys;
mod order;
mod policy;
mod renew;
mod servers;
