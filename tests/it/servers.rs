//! Real servers for the tests, from Debian's packages (installed by .ci/run), each a private
//! instance on a free loopback port in the test's folder, stopped on drop: nginx (TLS for
//! deployments, plain HTTP for a web root) and BIND 9 (`named`, an authoritative zone that takes
//! TSIG-signed dynamic updates).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::path_str;

/// A free TCP (and, for named, UDP) port on loopback.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until `at` accepts TCP connections, or the child exits.
fn wait_listening(child: &mut Child, at: impl Into<std::net::SocketAddr>, what: &str, log: &Path) {
    let at = at.into();
    let started = Instant::now();
    while std::net::TcpStream::connect(at).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not start listening on {at}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private nginx: own prefix and config, 127.0.0.1 on a free port, master in the foreground.
pub struct Nginx {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
}

impl Nginx {
    /// TLS for `example.test` with these files.
    pub fn tls(dir: PathBuf, fullchain: &Path, key: &Path) -> Self {
        let server = format!(
            "listen 127.0.0.1:{{port}} ssl;\n  server_name example.test;\n  ssl_certificate {};\n  ssl_certificate_key {};\n  location / {{ return 200 \"ok\\n\"; }}",
            fullchain.display(),
            key.display()
        );
        Self::start(dir, &server)
    }

    /// Plain HTTP serving `root` for any name, with an access log (`access.log`).
    pub fn webroot(dir: PathBuf, root: &Path) -> Self {
        let server = format!(
            "listen 127.0.0.1:{{port}};\n  server_name _;\n  root {};\n  access_log {}/access.log;",
            root.display(),
            dir.display()
        );
        Self::start(dir, &server)
    }

    fn start(dir: PathBuf, server: &str) -> Self {
        let nginx = Path::new("/usr/sbin/nginx");
        assert!(
            nginx.exists(),
            "nginx is not installed: run ./.ci/run, which installs it from Debian's packages"
        );
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let port = free_port();
        let d = dir.display();
        let server = server.replace("{port}", &port.to_string());
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  {server}\n }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("conf");
        let mut child = Command::new(nginx)
            .args(Self::base_args(&dir))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        wait_listening(
            &mut child,
            ([127, 0, 0, 1], port),
            "nginx",
            &dir.join("error.log"),
        );
        Self { child, dir, port }
    }

    pub fn base_args(dir: &Path) -> Vec<String> {
        [
            "-p",
            path_str(dir),
            "-c",
            path_str(&dir.join("nginx.conf")),
            "-e",
            path_str(&dir.join("error.log")),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    /// A TOML argv for an nginx command on this instance.
    pub fn toml_argv(&self, extra: &[&str]) -> String {
        let mut v = vec!["/usr/sbin/nginx".to_owned()];
        v.extend(Self::base_args(&self.dir));
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        toml_argv(&v)
    }

    /// The serial nginx serves, as `openssl s_client` sees it (independent of certkeeper).
    pub fn served_serial(&self) -> String {
        let s_client = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", self.port),
                "-servername",
                "example.test",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("s_client");
        let x509 = Command::new("openssl")
            .args(["x509", "-noout", "-serial"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(&s_client.stdout)?;
                c.wait_with_output()
            })
            .expect("x509");
        String::from_utf8_lossy(&x509.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_owned()
    }

    /// The serial nginx serves once a reload has settled: old workers keep accepting for a
    /// moment after a reload, so this asks again (up to 10 s) until `expected` is served, and
    /// returns the last answer for the caller's assertion.
    pub fn settled_serial(&self, expected: &str) -> String {
        let started = Instant::now();
        loop {
            let served = self.served_serial();
            if served == expected || started.elapsed() > Duration::from_secs(10) {
                return served;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The access log (webroot instances).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop(&mut self.child, "-QUIT");
    }
}

/// An argv as a TOML array.
pub fn toml_argv(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The zone every DNS test uses.
pub const ZONE: &str = "example.test";
/// The TSIG key's name.
pub const KEY_NAME: &str = "certkeeper-key";

/// A private BIND 9: `named` in the foreground on a free loopback port, authoritative for
/// `example.test` (which already holds an SPF TXT record at its apex), taking dynamic updates
/// signed with a fresh hmac-sha256 TSIG key. [`Bind::pair`] starts a primary and a secondary
/// that only catches up when told to.
pub struct Bind {
    child: Child,
    pub dir: PathBuf,
    pub ip: std::net::IpAddr,
    pub port: u16,
    /// The key in BIND's key-file syntax, mode 0600; it also signs `rndc` commands.
    pub key_file: PathBuf,
    /// The `rndc` control channel's port.
    control_port: u16,
    /// The loopback address added for it, removed after it stops.
    _lo: Option<LoopbackAddr>,
}

/// An address added to `lo` while a test runs: BIND listens only on addresses an interface
/// has, and `lo` has only 127.0.0.1 of 127.0.0.0/8.
struct LoopbackAddr(std::net::IpAddr);

impl LoopbackAddr {
    fn add(ip: std::net::IpAddr) -> Self {
        let out = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .output()
            .expect("ip (iproute2) runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("exists"),
            "ip addr add {ip}: {err}"
        );
        Self(ip)
    }
}

impl Drop for LoopbackAddr {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .output();
    }
}

/// How many 200-byte TXT records the apex of a [`Bind::pair`] zone holds.
pub const PADDING: usize = 8;

/// What a [`Bind`] is for the zone.
enum Role {
    /// Loads the zone file, which names these servers (NS name, address), and holds this many
    /// 200-byte TXT records at the apex.
    Primary(Vec<(String, std::net::IpAddr)>, usize),
    /// Transfers the zone from this primary (port 53), and again only when told.
    Secondary(std::net::IpAddr),
}

impl Bind {
    pub fn start(dir: PathBuf) -> Self {
        let lo = std::net::IpAddr::from([127, 0, 0, 1]);
        Self::start_as(
            dir,
            lo,
            free_port(),
            Role::Primary(vec![("ns".into(), lo)], 0),
        )
    }

    /// Two authoritative servers of the zone on port 53 of their own loopback addresses, like
    /// a hidden primary's public servers: `ns1` (the primary, which takes the updates) and
    /// `ns2`, a secondary that never refreshes on its own (no NOTIFY, a refresh time longer
    /// than any test): [`Bind::catch_up`] makes it transfer the zone. The apex holds
    /// [`PADDING`] long TXT records besides the SPF one, so that no answer for it fits in a
    /// UDP datagram: asking needs TCP.
    pub fn pair(dir: &Path) -> (Self, Self) {
        use std::sync::atomic::{AtomicU8, Ordering};
        static NEXT: AtomicU8 = AtomicU8::new(1);
        assert!(
            rustix::process::geteuid().is_root(),
            "two name servers on port 53 need root: run the tests as ./.ci/run does"
        );
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns1 = std::net::IpAddr::from([127, 53, n, 1]);
        let ns2 = std::net::IpAddr::from([127, 53, n, 2]);
        let servers = vec![("ns1".to_owned(), ns1), ("ns2".to_owned(), ns2)];
        let primary = Self::start_as(dir.join("ns1"), ns1, 53, Role::Primary(servers, PADDING));
        let secondary = Self::start_as(dir.join("ns2"), ns2, 53, Role::Secondary(ns1));
        let started = Instant::now();
        while secondary.dig(ZONE, "SOA").is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the secondary did not load the zone: {}",
                std::fs::read_to_string(secondary.dir.join("named.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (primary, secondary)
    }

    fn start_as(dir: PathBuf, ip: std::net::IpAddr, port: u16, role: Role) -> Self {
        let named = Path::new("/usr/sbin/named");
        assert!(
            named.exists(),
            "BIND is not installed: run ./.ci/run, which installs bind9 from Debian's packages"
        );
        std::fs::create_dir_all(&dir).expect("named dir");
        let lo = (ip != std::net::IpAddr::from([127, 0, 0, 1])).then(|| LoopbackAddr::add(ip));
        let key_file = dir.join("tsig.key");
        let key = Command::new("/usr/sbin/tsig-keygen")
            .args(["-a", "hmac-sha256", KEY_NAME])
            .output()
            .expect("tsig-keygen");
        assert!(key.status.success(), "tsig-keygen failed");
        std::fs::write(&key_file, &key.stdout).expect("key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let control_port = free_port();
        let d = dir.display();
        let zone = match &role {
            Role::Primary(servers, padding) => {
                let mut text = "$ORIGIN example.test.\n$TTL 60\n@ IN SOA ns.example.test. admin.example.test. ( 1 86400 3600 604800 60 )\n@ IN A 127.0.0.1\nwww IN A 127.0.0.1\napi IN A 127.0.0.1\n@ IN TXT \"v=spf1 -all\"\n".to_owned();
                for i in 0..*padding {
                    text.push_str(&format!("@ IN TXT \"{i:03}{}\"\n", "x".repeat(197)));
                }
                for (name, addr) in servers {
                    text.push_str(&format!(
                        "@ IN NS {name}.example.test.\n{name} IN A {addr}\n"
                    ));
                }
                std::fs::write(dir.join("example.test.zone"), text).expect("zone");
                format!(
                    "type primary; file \"{d}/example.test.zone\"; allow-update {{ key \"{KEY_NAME}\"; }}; allow-transfer {{ any; }};"
                )
            }
            Role::Secondary(primary) => {
                format!(
                    "type secondary; file \"{d}/example.test.zone\"; primaries {{ {primary} port 53; }};"
                )
            }
        };
        std::fs::write(
            dir.join("named.conf"),
            format!(
                "options {{\n directory \"{d}\";\n pid-file \"{d}/named.pid\";\n session-keyfile \"{d}/session.key\";\n managed-keys-directory \"{d}\";\n listen-on port {port} {{ {ip}; }};\n listen-on-v6 {{ none; }};\n recursion no;\n dnssec-validation no;\n notify no;\n}};\ninclude \"{}\";\ncontrols {{ inet {ip} port {control_port} allow {{ {ip}; }} keys {{ \"{KEY_NAME}\"; }}; }};\nzone \"{ZONE}\" {{ {zone} }};\n",
                key_file.display()
            ),
        )
        .expect("conf");
        let log = dir.join("named.log");
        let mut child = Command::new(named)
            .args(["-g", "-n", "1", "-c", path_str(&dir.join("named.conf"))])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("named starts");
        wait_listening(&mut child, (ip, port), "named", &log);
        Self {
            child,
            dir,
            ip,
            port,
            key_file,
            control_port,
            _lo: lo,
        }
    }

    pub fn addr(&self) -> String {
        std::net::SocketAddr::new(self.ip, self.port).to_string()
    }

    /// Makes a secondary transfer the zone now (`rndc refresh`).
    pub fn catch_up(&self) {
        let conf = self.dir.join("rndc.conf");
        std::fs::write(
            &conf,
            format!(
                "include \"{}\";\noptions {{ default-key \"{KEY_NAME}\"; default-server {}; default-port {}; }};\n",
                self.key_file.display(),
                self.ip,
                self.control_port
            ),
        )
        .expect("rndc.conf");
        let out = Command::new("/usr/sbin/rndc")
            .args(["-c", path_str(&conf), "refresh", ZONE])
            .output()
            .expect("rndc (bind9) runs");
        assert!(
            out.status.success(),
            "rndc refresh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends `updates` (nsupdate `update …` lines) to this server with Debian's `nsupdate`,
    /// signed with the zone's key.
    pub fn nsupdate(&self, updates: &[&str]) {
        use std::io::Write;
        let mut child = Command::new("/usr/bin/nsupdate")
            .args(["-k", path_str(&self.key_file)])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsupdate (bind9-dnsutils) runs");
        let script = format!(
            "server {} {}\nzone {ZONE}\n{}\nsend\n",
            self.ip,
            self.port,
            updates.join("\n")
        );
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("nsupdate");
        assert!(
            out.status.success(),
            "nsupdate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What `dig` sees for `name`/`rtype` (an independent client), one answer per line.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args([
                &format!("@{}", self.ip),
                "-p",
                &self.port.to_string(),
                "+short",
                "+norecurse",
                rtype,
                name,
            ])
            .output()
            .expect("dig (bind9-dnsutils) runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_matches('"').trim_end_matches('.').to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// A hook script (for `dns_publish`/`dns_cleanup`) that adds (`add`) or deletes
    /// (`delete`) the record certkeeper names in its environment with Debian's `nsupdate`,
    /// and appends what it did and the environment's variable names to `log`.
    pub fn nsupdate_hook(&self, dir: &Path, action: &str, log: &Path) -> PathBuf {
        let path = dir.join(format!("dns-{action}.sh"));
        let ttl = if action == "add" { " 60" } else { "" };
        let script = format!(
            "#!/bin/sh\nset -e\necho \"{action} $CERTKEEPER_DCV_RECORD_NAME $CERTKEEPER_DCV_RECORD_TYPE $CERTKEEPER_DCV_RECORD_VALUE domain=$CERTKEEPER_DCV_DOMAIN method=$CERTKEEPER_DCV_METHOD vars=$(env | cut -d= -f1 | sort | tr '\\n' ',')\" >> {log}\n\
             value=\"$CERTKEEPER_DCV_RECORD_VALUE\"\n[ \"$CERTKEEPER_DCV_RECORD_TYPE\" = CNAME ] && value=\"$value.\"\n[ \"$CERTKEEPER_DCV_RECORD_TYPE\" = TXT ] && value=\"\\\"$value\\\"\"\n\
             printf 'server {ip} {port}\\nzone {ZONE}\\nupdate {action} %s{ttl} %s %s\\nsend\\n' \"$CERTKEEPER_DCV_RECORD_NAME\" \"$CERTKEEPER_DCV_RECORD_TYPE\" \"$value\" | /usr/bin/nsupdate -k {key}\n",
            log = log.display(),
            ip = self.ip,
            port = self.port,
            key = self.key_file.display(),
        );
        std::fs::write(&path, script).expect("hook");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        stop(&mut self.child, "-TERM");
    }
}

/// The EAB key id and HMAC key (base64url) Pebble is told to require.
pub const EAB_KID: &str = "kid-1";
pub const EAB_HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// Which Pebble: Debian 12's package (2.4: no ARI, no profiles), or the newer one `.ci/run`
/// unpacks from Debian's next release into `target/test-tools/` (ARI and profiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PebbleKind {
    Bookworm,
    Newer,
}

/// Options for a Pebble.
pub struct PebbleOptions {
    pub kind: PebbleKind,
    /// Where http-01 is checked (a web server on 127.0.0.1).
    pub http_port: u16,
    /// The DNS server Pebble resolves names and dns-01 records with.
    pub dns: String,
    pub eab_required: bool,
}

/// A private Pebble (Let's Encrypt's ACME test server) on loopback, with a listener
/// certificate from a throwaway CA (`ca_file`), real validation (`PEBBLE_VA_NOSLEEP=1`, no
/// authorization reuse).
pub struct Pebble {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
    pub management_port: u16,
    /// The listener's CA, for `[[acme]] ca_file`.
    pub ca_file: PathBuf,
}

impl Pebble {
    pub fn binary(kind: PebbleKind) -> PathBuf {
        match kind {
            PebbleKind::Bookworm => PathBuf::from("/usr/bin/pebble"),
            PebbleKind::Newer => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/test-tools/pebble-newer/usr/bin/pebble"),
        }
    }

    pub fn start(dir: PathBuf, opts: PebbleOptions) -> Self {
        let binary = Self::binary(opts.kind);
        assert!(
            binary.exists(),
            "{} is missing: run ./.ci/run, which installs Debian's pebble and unpacks the newer one",
            binary.display()
        );
        std::fs::create_dir_all(&dir).expect("pebble dir");
        // A throwaway CA for Pebble's own HTTPS listener.
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble listener test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let mut leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf");
        let ca_file = dir.join("listener-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("ca");
        std::fs::write(dir.join("cert.pem"), leaf_cert.pem()).expect("cert");
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).expect("key");
        let (port, management_port, tls_port) = (free_port(), free_port(), free_port());
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": opts.http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": opts.eab_required,
            "externalAccountMACKeys": { EAB_KID: EAB_HMAC },
        });
        if opts.kind == PebbleKind::Newer {
            pebble["profiles"] = serde_json::json!({
                "default": { "description": "the default profile", "validityPeriod": 7_776_000 },
                "shortlived": { "description": "six days", "validityPeriod": 518_400 },
            });
        }
        std::fs::write(
            dir.join("pebble.json"),
            serde_json::to_vec_pretty(&serde_json::json!({ "pebble": pebble })).expect("json"),
        )
        .expect("config");
        let log = dir.join("pebble.log");
        let mut child = Command::new(&binary)
            .args([
                "-config",
                path_str(&dir.join("pebble.json")),
                "-dnsserver",
                &opts.dns,
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble starts");
        wait_listening(&mut child, ([127, 0, 0, 1], port), "pebble", &log);
        Self {
            child,
            dir,
            port,
            management_port,
            ca_file,
        }
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// The root that issues Pebble's certificates (fetched from its management interface).
    pub async fn issuing_root(&self) -> String {
        let pem = std::fs::read(&self.ca_file).expect("ca");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("ca"))
            .build()
            .expect("client");
        client
            .get(format!(
                "https://127.0.0.1:{}/roots/0",
                self.management_port
            ))
            .send()
            .await
            .expect("roots")
            .text()
            .await
            .expect("pem")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        stop(&mut self.child, "-TERM");
    }
}
