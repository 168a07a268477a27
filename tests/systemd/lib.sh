# Helpers for the scripts that run inside the container (sourced).

step() { echo "== $*"; }

# Saves the journals where run.sh prints them, and fails the test.
fail() {
  echo "FAIL: $*"
  for u in certkeeper ck-sandbox nginx; do
    journalctl -u "$u" --no-pager -o short-monotonic >"/mnt/out/$u.journal" 2>&1 || true
  done
  certkeeper status >/mnt/out/status.journal 2>&1 || true
  exit 1
}

pass() { echo "== all checks passed"; }

# wait_for WHAT SECONDS COMMAND...: polls COMMAND once a second until it succeeds.
wait_for() {
  local what=$1 limit=$2
  shift 2
  for ((i = 0; i < limit; i++)); do
    "$@" 2>/dev/null && return 0
    sleep 1
  done
  fail "timed out after ${limit} s waiting for $what"
}

fingerprint() { openssl x509 -noout -fingerprint -sha256 "$@" 2>/dev/null; }
installed_fp() { fingerprint -in "$cert_dir/cert.pem"; }
served_fp() {
  openssl s_client -connect 127.0.0.1:443 -servername www.example.test </dev/null 2>/dev/null | fingerprint
}
# The certificate nginx serves is the installed one, and certkeeper installed it.
served_is_installed() {
  [[ -L $cert_dir/cert.pem && $(served_fp) == "$(installed_fp)" && -n $(installed_fp) ]]
}
served_differs() { served_is_installed && [[ $(served_fp) != "$1" ]]; }

status_field() { certkeeper status --json | jq -r --arg n "$1" ".[] | select(.name == \$n) | .$2"; }
status_step_is() { [[ $(status_field "$1" step) == "$2" ]]; }

journal_count() { journalctl -u certkeeper --no-pager -o cat | grep -cF "$1" || true; }
journal_has_more() { (($(journal_count "$1") > $2)); }
restarted_once() {
  [[ $(systemctl show -p NRestarts --value certkeeper) == 1 &&
    $(systemctl show -p ActiveState --value certkeeper) == active ]]
}
