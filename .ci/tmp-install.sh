#!/usr/bin/env bash
# CI entry point: installs what the tests need from Debian's packages, then runs the checks
# and the whole test suite. Safe to run on a developer machine (installs only what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# Real components the tests use: openssl (independent crypto checks), nginx (served certificate
# after reload, a web root for http-token and http-01), BIND 9 and its tools (named,
# tsig-keygen, nsupdate, dig: RFC 2136 and DNS hooks), Pebble (Let's Encrypt's ACME test
# server), systemd-analyze (unit verification), systemd-container and debootstrap (the
# packaged daemon under a real systemd, tests/systemd), procps (ps/pgrep), python3-venv and
# what python-ldap builds against (third-party CertCentral clients run against the sandbox).
packages=(openssl nginx bind9 bind9-dnsutils pebble systemd systemd-container debootstrap
  procps ca-certificates python3-venv python3-dev gcc libldap2-dev libsasl2-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  # Keep package scripts from starting services (nginx would grab port 80).
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

# Debian 12's pebble (2.4) has no ARI and no profiles: the ACME tests of those use the pebble
# of Debian's next release (a Go binary that needs only libc), unpacked into target/test-tools,
# from the mirror this machine's apt sources already use (only the suite differs).
newer=target/test-tools/pebble-newer
if [[ ! -x $newer/usr/bin/pebble ]]; then
  echo "== unpacking a newer pebble from Debian forky"
  apt_dir=$(mktemp -d)
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/dl"
  mirror=$(.ci/debian-mirror)
  echo "deb $mirror forky main" > "$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=- \
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Get::List-Cleanup=0)
  apt-get "${apt_opts[@]}" update -q >/dev/null
  (cd "$apt_dir/dl" && apt-get "${apt_opts[@]}" download pebble 2>/dev/null)
  mkdir -p "$newer"
  dpkg -x "$apt_dir"/dl/pebble_*.deb "$newer"
  rm -rf "$apt_dir"
  "$newer/usr/bin/pebble" -version >/dev/null 2>&1 || true
fi

# Third-party CertCentral clients the sandbox's contract tests run, from PyPI by exact
# version (tests/it/contract.rs): Netflix Lemur (its DigiCert plugin) and certmesh.
tools=target/test-tools
if [[ ! -f $tools/py-lemur/.installed ]]; then
  echo "== installing lemur 1.9.3 from PyPI"
  rm -rf "$tools/py-lemur"
  python3 -m venv "$tools/py-lemur"
  "$tools/py-lemur/bin/pip" install -q --disable-pip-version-check --no-deps lemur==1.9.3
  # Lemur's own pinned requirements (its metadata), without extras.
  grep '^Requires-Dist:' "$tools"/py-lemur/lib/python3*/site-packages/lemur-1.9.3.dist-info/METADATA \
    | grep -v 'extra ==' | sed 's/^Requires-Dist: //' > "$tools/py-lemur/requirements.txt"
  "$tools/py-lemur/bin/pip" install -q --disable-pip-version-check -r "$tools/py-lemur/requirements.txt"
  touch "$tools/py-lemur/.installed"
fi
if [[ ! -f $tools/py-certmesh/.installed ]]; then
  echo "== installing certmesh 3.0.38 from PyPI"
  rm -rf "$tools/py-certmesh"
  python3 -m venv "$tools/py-certmesh"
  "$tools/py-certmesh/bin/pip" install -q --disable-pip-version-check certmesh==3.0.38
  touch "$tools/py-certmesh/.installed"
fi

