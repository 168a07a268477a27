#!/usr/bin/env bash
# The packaged daemon under a real systemd: boots a Debian 12 image with systemd-nspawn, installs
# the .deb given as $1 inside it, and runs a test script there (default typical-server.sh) as a
# unit of the container's systemd. Needs root, systemd-container and debootstrap.
#
#   tests/systemd/run.sh target/debian/certkeeper_*.deb [SCRIPT]
#
# The image is built once with debootstrap, from the Debian mirror of this machine's apt sources,
# and cached under target/systemd-image (rebuilt when the package list below changes). Each run
# boots a throw-away copy (--ephemeral), with only loopback networking (--private-network).
set -euo pipefail
cd "$(dirname "$0")/../.."
deb=$(realpath "${1:?usage: run.sh CERTKEEPER.deb [SCRIPT]}")
script=${2:-typical-server.sh}

packages=systemd,systemd-sysv,dbus,nginx,ssl-cert,openssl,ca-certificates,procps,jq
image=target/systemd-image/bookworm
if [[ ! -f $image/.ready || $(cat "$image/.ready") != "$packages" ]]; then
  mirror=$(.ci/debian-mirror)
  echo "== building the Debian 12 image from $mirror (once; cached in $image)"
  rm -rf "$image"
  mkdir -p "$(dirname "$image")"
  start=$SECONDS
  debootstrap --variant=minbase --include="$packages" bookworm "$image.tmp" "$mirror" >/dev/null
  rm -rf "$image" && mv "$image.tmp" "$image"
  echo "$packages" > "$image/.ready"
  echo "== image built in $((SECONDS - start)) s"
fi

out=$(mktemp -d)
chmod 0755 "$out"
cleanup() { rm -rf "$out"; }
trap cleanup EXIT
cp "$deb" "$out/certkeeper.deb"
echo "== booting the image: $script"
start=$SECONDS
rc=0
# The container's systemd runs the test as ck-test.service and exits with its status.
timeout 1200 systemd-nspawn --quiet --boot --ephemeral --private-network --register=no \
  --keep-unit --console=passive -D "$image" \
  --bind-ro="$PWD/tests/systemd:/mnt/test" --bind="$out:/mnt/out" \
  --bind-ro="$PWD/tests/systemd/ck-test.service:/etc/systemd/system/ck-test.service" \
  --setenv=CK_TEST_SCRIPT="$script" \
  systemd.wants=ck-test.service systemd.show_status=0 </dev/null >"$out/console" 2>&1 || rc=$?
cat "$out/log" 2>/dev/null || { echo "(the test wrote no log; the console said:)"; cat "$out/console"; }
if ((rc != 0)); then
  for f in "$out"/*.journal; do
    [[ -f $f ]] && { echo "== $(basename "$f")"; tail -n 200 "$f"; }
  done
  echo "== FAILED ($script, exit $rc) after $((SECONDS - start)) s"
  exit 1
fi
echo "== passed ($script) in $((SECONDS - start)) s"
