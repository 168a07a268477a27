#!/usr/bin/env bash
# Builds target/debian/certkeeper_*.deb: the release binary, the man page and completions,
# then cargo-deb (installed from crates.io if missing) with the metadata in Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo build --release --locked
rm -rf target/assets
target/release/certkeeper generate-assets target/assets
gzip -9n target/assets/certkeeper.1
cargo deb --no-build --locked
ls target/debian/*.deb
