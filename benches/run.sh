#!/usr/bin/env bash
# Reproduces every figure in BENCHMARKS.md on this machine (BIND and Pebble must be installed,
# as ./.ci/run does):
#   benches/run.sh            the full run (about 5 minutes once built; installs certbot)
#   benches/run.sh --smoke    a small version for CI (no timing goals, no certbot)
# Data is generated in a temporary folder (benches/fixture.rs) and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} == --smoke ]]; then
  SMALL=50 LARGE=100 RUNS=3 IDLE=2 IDLE_LARGE=2 RENEWALS=50 LIMITED=20 KEYGEN=2 CERTBOT=0 ISSUERS=2
else
  SMALL=1000 LARGE=10000 RUNS=10 IDLE=120 IDLE_LARGE=10 RENEWALS=1000 LIMITED=400 KEYGEN=15 CERTBOT=1 ISSUERS=20
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The binary users install. `cargo bench` below links target/release/certkeeper again with the
# bench profile, so it is measured from a copy.
bin=$work/certkeeper
cp target/release/certkeeper "$bin"
measure() { python3 benches/measure.py "$@"; }

echo "# certkeeper benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r))"
echo "# release binary: $(du -h "$bin" | cut -f1)"
for n in $SMALL $LARGE; do
  cargo bench --quiet --bench fixture -- "$work/n$n" "$n" >/dev/null
  echo "## $n certificates"
  echo -n "status --json:            "; measure time "$RUNS" -- "$bin" -c "$work/n$n/certkeeper.toml" status --json
  echo -n "renew (nothing due):      "; measure time "$RUNS" -- "$bin" -c "$work/n$n/certkeeper.toml" renew
done

echo "## daemon with $SMALL certificates: start to READY, then idle ${IDLE}s"
measure daemon "$IDLE" -- "$bin" -c "$work/n$SMALL/certkeeper.toml" run
echo "## daemon with $LARGE certificates: start to READY, then idle ${IDLE_LARGE}s"
measure daemon "$IDLE_LARGE" -- "$bin" -c "$work/n$LARGE/certkeeper.toml" run

if [[ $CERTBOT == 1 ]]; then
  if ! command -v certbot >/dev/null; then
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends certbot >/dev/null
  fi
  cb="$work/n$SMALL/certbot"
  echo "## certbot $(certbot --version 2>&1 | awk '{print $2}') renew, $SMALL lineages, nothing due"
  echo -n "certbot renew:            "
  measure time 3 -- certbot renew --config-dir "$cb" --work-dir "$cb/work" --logs-dir "$cb/logs" --no-random-sleep-on-renew
  echo -n "certkeeper renew:         "; measure time 3 -- "$bin" -c "$work/n$SMALL/certkeeper.toml" renew
fi

echo "## engine (cargo bench --bench engine -- $RENEWALS $LIMITED $KEYGEN)"
cargo bench --quiet --bench engine -- "$RENEWALS" "$LIMITED" "$KEYGEN"

echo "## issuers against real servers (cargo bench --bench issuers -- $ISSUERS; BIND and Pebble from Debian)"
cargo bench --quiet --bench issuers -- "$ISSUERS"
