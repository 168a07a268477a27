#!/usr/bin/env bash
# Regenerates link/startup.order, the functions rust-lld places first in the binary (build.rs):
# builds the release binary (rust-lld also writes its map), runs it under callgrind as a daemon
# watching 1,000 certificates until it idles, and names the functions it executed. Run it when
# benches/run.sh says the list no longer matches the build, or the idle memory in BENCHMARKS.md
# grows; commit the new file, then re-run benches/run.sh. Needs valgrind (apt-get install
# valgrind); about 8 minutes on 2 cores, most of it two release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "benches/startup-order.sh needs valgrind" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

map=$(python3 benches/startup_order.py build)
# `cargo bench` links target/release/certkeeper again, with the bench profile (other symbol
# names), so the binary the map describes is set aside first.
bin=$work/certkeeper
cp target/release/certkeeper "$bin"
cp "$map" "$work/certkeeper.map"
cargo bench --quiet --bench fixture -- "$work/n1000" 1000 >/dev/null
# The daemon's first look at 1,000 certificates takes well under a second natively and well
# under a minute under callgrind; 90 s also covers its idle wake-ups. SIGTERM stops it cleanly and callgrind then writes its profile.
timeout -s TERM 90 valgrind --tool=callgrind --dump-instr=yes \
  --callgrind-out-file="$work/callgrind.out" "$bin" -c "$work/n1000/certkeeper.toml" run \
  >"$work/daemon.log" 2>&1 || true
python3 benches/startup_order.py order "$work/certkeeper.map" "$work/callgrind.out" "$bin" >"$work/order"
mv "$work/order" link/startup.order
echo "link/startup.order: $(grep -vc '^#' link/startup.order) functions"
