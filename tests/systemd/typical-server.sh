#!/bin/bash
# Runs inside the booted container (tests/systemd/run.sh), as root, as an operator would: the
# README's install steps and its typical server, with nginx serving the certificate and the
# sandbox as CertCentral (a DV order, so every reissue is validated through nginx's web root).
#
# Checks: first issuance and renewals the daemon does by itself, each served by nginx; `group`,
# `key_mode`, `deploy_check = ["nginx", "-t"]`, `systemctl reload nginx` and `verify_endpoint`
# under the shipped unit; `systemctl reload certkeeper`; a SIGKILL while a request is pending
# (systemd restarts the daemon and the renewal resumes without a second request); the API key
# from LoadCredential, never in the journal; journal fields; the watchdog; `certkeeper status`;
# no ERROR in the journal. Waits poll for the state they assert, with generous limits.
set -euo pipefail
source /mnt/test/lib.sh

api_key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
cert_dir=/etc/ssl/certkeeper/www

step "install the package (README: Install)"
dpkg -i /mnt/out/certkeeper.deb >/dev/null
test -d /etc/ssl/certkeeper || fail "the package did not create /etc/ssl/certkeeper"
[[ $(stat -c %a /etc/ssl/certkeeper) == 755 ]] || fail "/etc/ssl/certkeeper is not 0755"
systemctl is-enabled certkeeper >/dev/null || fail "the package did not enable the unit"

step "the sandbox CA, as a unit of its own: a DV order validated over HTTP at every reissue"
mkdir -p /var/lib/ck-sandbox
cat > /var/lib/ck-sandbox/orders.toml <<EOF
[[order]]
id = 1001
common_name = "www.example.test"
dv = true
dcv_method = "http-token"
EOF
systemd-run --quiet --unit=ck-sandbox --setenv=CERTKEEPER_SANDBOX_API_KEY="$api_key" \
  /usr/bin/certkeeper sandbox --listen 127.0.0.1:8443 --orders-file /var/lib/ck-sandbox/orders.toml \
  --validity 150s --issuance-delay 3s --dcv-resolve '*=127.0.0.1:80' --dcv-poll 0s \
  --state /var/lib/ck-sandbox/state
wait_for "the sandbox to listen" 60 bash -c 'exec 3<>/dev/tcp/127.0.0.1/8443'

step "nginx: the web root on port 80, the certificate on 443 (a placeholder until the first issuance)"
mkdir -p "$cert_dir" /var/www/html
cp /etc/ssl/certs/ssl-cert-snakeoil.pem "$cert_dir/fullchain.pem"
cp /etc/ssl/certs/ssl-cert-snakeoil.pem "$cert_dir/cert.pem"
install -m 0600 /etc/ssl/private/ssl-cert-snakeoil.key "$cert_dir/key.pem"
cat > /etc/nginx/sites-enabled/default <<EOF
server {
    listen 127.0.0.1:80;
    server_name www.example.test;
    location /.well-known/ { root /var/www/html; }
    location / { return 301 https://\$host\$request_uri; }
}
server {
    listen 127.0.0.1:443 ssl;
    server_name www.example.test;
    ssl_certificate $cert_dir/fullchain.pem;
    ssl_certificate_key $cert_dir/key.pem;
    root /var/www/html;
}
EOF
systemctl restart nginx
placeholder=$(installed_fp)

step "configure certkeeper (README: the typical server), check, and start"
install -m 0600 /dev/stdin /etc/certkeeper/api-key <<<"$api_key"
cat > /etc/certkeeper/certkeeper.toml <<EOF
[certcentral]
url = "http://127.0.0.1:8443/services/v2"
timeout = "10s"

[daemon]
jitter = "0s"
poll_interval = "1s"
poll_max = "5s"

[[certificate]]
name = "www"
order_id = 1001
key_type = "ecdsa-p256"
dns_names = ["www.example.test"]
skip_approval = true
dcv_method = "http-token"
http_root = "/var/www/html"
cert_file = "$cert_dir/cert.pem"
key_file = "$cert_dir/key.pem"
fullchain_file = "$cert_dir/fullchain.pem"
group = "ssl-cert"
key_mode = "0640"
renew_before = "75s"
deploy_check = ["nginx", "-t"]
reload = ["systemctl", "reload", "nginx"]
verify_endpoint = "127.0.0.1:443"
EOF
# The README's drop-in for this configuration, as `check --drop-in` prints it.
mkdir -p /etc/systemd/system/certkeeper.service.d
certkeeper check --drop-in > /etc/systemd/system/certkeeper.service.d/paths.conf
echo "-- drop-in:"; cat /etc/systemd/system/certkeeper.service.d/paths.conf
systemctl daemon-reload
certkeeper check >/dev/null || fail "certkeeper check refused the README's configuration"
systemctl start certkeeper
[[ $(systemctl show -p ActiveState --value certkeeper) == active ]] || fail "certkeeper is not active"

step "first issuance: installed, owned by group ssl-cert, 0640, served by nginx"
wait_for "the first certificate to be served" 180 served_differs "$placeholder"
first=$(installed_fp)
key=$(readlink -f "$cert_dir/key.pem")
[[ $(stat -c '%G %a' "$key") == "ssl-cert 640" ]] || fail "key is $(stat -c '%U:%G %a' "$key"), expected group ssl-cert, 0640"
status_field www state | grep -qx ok || fail "status does not say ok: $(certkeeper status)"

step "a renewal the daemon does by itself"
wait_for "a renewed certificate to be served" 300 served_differs "$first"
second=$(installed_fp)

step "systemctl reload certkeeper: RELOADING, then READY"
reloads=$(journal_count "configuration reloaded")
systemctl reload certkeeper
wait_for "the reload to be logged" 60 journal_has_more "configuration reloaded" "$reloads"
[[ $(systemctl show -p ActiveState --value certkeeper) == active ]] || fail "not active after reload"

step "SIGKILL while a request is pending: systemd restarts the daemon, the renewal resumes"
wait_for "the next request to be pending" 300 status_step_is www pending
accepted=$(journal_count "CertCentral accepted the request")
systemctl kill -s SIGKILL certkeeper
wait_for "systemd to restart certkeeper" 120 restarted_once
wait_for "the resumed renewal to be served" 300 served_differs "$second"
(( $(journal_count "CertCentral accepted the request") == accepted )) ||
  fail "the restarted daemon sent another request instead of resuming the pending one"

step "the API key came from LoadCredential and is in no log"
journalctl -u certkeeper --no-pager -o cat API_KEY="the systemd credential certcentral-api-key" |
  grep -q "certkeeper started" || fail "the daemon did not take the API key from its credential"
! grep -qF "$api_key" "/proc/$(systemctl show -p MainPID --value certkeeper)/environ" ||
  fail "the API key is in the daemon's environment"
! journalctl -u certkeeper --no-pager | grep -qF "$api_key" || fail "the API key is in the journal"

step "journal fields: the certificate name and order id are fields of the entry"
journalctl -u certkeeper CERT=www ORDER_ID=1001 --no-pager -o cat | grep -q "renewal complete" ||
  fail "no journal entry with CERT=www ORDER_ID=1001 says 'renewal complete'"

step "certkeeper status from a shell"
certkeeper status | tee /dev/stderr | grep -Eq '^www +.* ok ' || fail "status does not list www as ok"

step "the watchdog: pings keep the daemon alive past several watchdog periods"
mkdir -p /run/systemd/system/certkeeper.service.d
printf '[Service]\nWatchdogSec=3s\n' > /run/systemd/system/certkeeper.service.d/watchdog.conf
systemctl daemon-reload
systemctl restart certkeeper
restarts=$(systemctl show -p NRestarts --value certkeeper)
sleep 12
[[ $(systemctl show -p ActiveState --value certkeeper) == active ]] || fail "not active with WatchdogSec=3s"
[[ $(systemctl show -p NRestarts --value certkeeper) == "$restarts" ]] || fail "the watchdog restarted the daemon"
[[ -n $(systemctl show -p WatchdogTimestampMonotonic --value certkeeper | grep -v '^0$') ]] ||
  fail "systemd recorded no watchdog ping"

step "no ERROR in the journal"
if journalctl -u certkeeper --no-pager -p err -o cat | grep .; then
  fail "the journal has errors (above)"
fi

step "without the drop-in the web root is read-only: refused before the CA is asked, naming the line"
rm /etc/systemd/system/certkeeper.service.d/paths.conf
systemctl daemon-reload
systemctl restart certkeeper
accepted=$(journal_count "CertCentral accepted the request")
wait_for "the renewal to be refused" 300 bash -c \
  'certkeeper status --json | jq -r ".[0].last_error // empty" | grep -qF "ReadWritePaths=/var/www/html"'
(( $(journal_count "CertCentral accepted the request") == accepted )) ||
  fail "a request went to the CA although the web root was read-only"
pass
