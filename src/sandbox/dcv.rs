//! The sandbox validates domains for real, as DigiCert does (dcv.md): it fetches
//! `http://NAME/.well-known/pki-validation/fileauth.txt` (each exact name), and asks a DNS server
//! for a TXT record holding the random value at the domain or at `_dnsauth.DOMAIN`, or for the
//! CNAME `_dnsauth.DOMAIN` → `RANDOM.dcv.digicert.com`. For loopback tests, `--dcv-resolve
//! NAME=IP:PORT` maps names (or `*`) to the web server, and `--dns-server` names the DNS
//! server (default: the system's).
//!
//! This is the sandbox's own code: it shares nothing with certkeeper's publishers, so the two
//! cannot agree on a mistake about where a record goes.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;

use super::state::base_domain;

/// What to check for one order.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) order_id: u64,
    pub(super) method: String,
    pub(super) value: String,
    /// The names of the request (exact names; `*.` wildcards are checked at their base).
    pub(super) names: Vec<String>,
}

/// The verdict: the base domains validated, or CertCentral's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Valid(Vec<String>),
    Invalid { code: String, message: String },
}

/// How the sandbox reaches the names it validates.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// `NAME` (or `*`) → where its web server listens.
    pub resolve: Vec<(String, SocketAddr)>,
    /// The DNS server to ask (default: the system's).
    pub dns_server: Option<SocketAddr>,
}

impl Reach {
    fn web_addr(&self, name: &str) -> Option<SocketAddr> {
        self.resolve
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .or_else(|| self.resolve.iter().find(|(n, _)| n == "*"))
            .map(|(_, a)| *a)
    }

    fn dns_addr(&self) -> Result<SocketAddr, String> {
        if let Some(a) = self.dns_server {
            return Ok(a);
        }
        let text = std::fs::read("/etc/resolv.conf").map_err(|e| e.to_string())?;
        let conf = resolv_conf::Config::parse(&text).map_err(|e| e.to_string())?;
        conf.nameservers
            .first()
            .map(|ip| SocketAddr::new(ip.into(), 53))
            .ok_or_else(|| "no nameserver in /etc/resolv.conf".into())
    }

    /// Checks a job the way its method says.
    pub(super) async fn check(&self, job: &Job) -> Verdict {
        match job.method.as_str() {
            "http-token" => self.check_http(job).await,
            "dns-txt-token" => self.check_dns(job, false).await,
            "dns-cname-token" => self.check_dns(job, true).await,
            other => Verdict::Invalid {
                // Invented: DigiCert documents no code for checking a method that is not a
                // token method (email, phone).
                code: "dcv_method_not_checkable".into(),
                message: format!("The DCV method {other:?} cannot be checked through the API."),
            },
        }
    }

    async fn check_http(&self, job: &Job) -> Verdict {
        if let Some(w) = job.names.iter().find(|n| n.starts_with("*.")) {
            return Verdict::Invalid {
                code: "invalid_wildcard_dcv_method".into(),
                message: format!("{w} is a wildcard; http-token cannot validate wildcards."),
            };
        }
        let mut bases: Vec<String> = Vec::new();
        for name in &job.names {
            let mut builder = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::limited(5));
            if let Some(addr) = self.web_addr(name) {
                builder = builder.resolve(name, addr);
            }
            let found = match builder.build() {
                Ok(client) => fetch(&client, name, &job.value).await,
                Err(e) => Err(e.to_string()),
            };
            if let Err(seen) = found {
                return Verdict::Invalid {
                    code: "file_random_value_not_found".into(),
                    message: format!(
                        "The random value was not found at http://{name}/.well-known/pki-validation/fileauth.txt ({seen})."
                    ),
                };
            }
            let base = base_domain(name).to_owned();
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
        Verdict::Valid(bases)
    }

    async fn check_dns(&self, job: &Job, cname: bool) -> Verdict {
        let server = match self.dns_addr() {
            Ok(s) => s,
            Err(e) => {
                return Verdict::Invalid {
                    code: if cname {
                        "invalid_dns_cname"
                    } else {
                        "invalid_dns_txt"
                    }
                    .into(),
                    message: format!("No DNS server to ask: {e}."),
                };
            }
        };
        let mut bases: Vec<String> = Vec::new();
        for name in &job.names {
            let base = base_domain(name).to_owned();
            if bases.contains(&base) {
                continue;
            }
            let ok = if cname {
                let want = format!("{}.dcv.digicert.com", job.value);
                query(server, &format!("_dnsauth.{base}"), RecordType::CNAME)
                    .await
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(&want))
            } else {
                let mut found = false;
                for owner in [base.clone(), format!("_dnsauth.{base}")] {
                    if query(server, &owner, RecordType::TXT)
                        .await
                        .iter()
                        .any(|v| v.trim() == job.value)
                    {
                        found = true;
                        break;
                    }
                }
                found
            };
            if !ok {
                return if cname {
                    Verdict::Invalid {
                        // Invented: DigiCert's docs name only the TXT and file codes.
                        code: "invalid_dns_cname".into(),
                        message: "Could not find a valid CNAME record for one or more domains."
                            .into(),
                    }
                } else {
                    Verdict::Invalid {
                        code: "invalid_dns_txt".into(),
                        message: "Could not find a valid TXT record for one or more domains."
                            .into(),
                    }
                };
            }
            bases.push(base);
        }
        Verdict::Valid(bases)
    }
}

/// Fetches the validation file and looks for the value in it.
async fn fetch(client: &reqwest::Client, name: &str, value: &str) -> Result<(), String> {
    let url = format!("http://{name}/.well-known/pki-validation/fileauth.txt");
    let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > 64 * 1024 {
            return Err("the file is too large".into());
        }
    }
    if String::from_utf8_lossy(&body).contains(value) {
        Ok(())
    } else {
        Err("another value".into())
    }
}

/// The TXT strings (joined per record) or CNAME targets at `owner`; nothing on any error.
async fn query(server: SocketAddr, owner: &str, rtype: RecordType) -> Vec<String> {
    let Ok(mut name) = Name::from_ascii(owner) else {
        return Vec::new();
    };
    name.set_fqdn(true);
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::new())
        .with_timeout(Some(Duration::from_secs(3)))
        .with_max_retries(1)
        .build();
    let (mut client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(bg);
    let answer = tokio::time::timeout(
        Duration::from_secs(4),
        client.query(name.clone(), DNSClass::IN, rtype),
    );
    let Ok(Ok(mut resp)) = answer.await else {
        return Vec::new();
    };
    // A truncated answer is asked again over TCP, as a CA's resolver does.
    if resp.metadata.truncation {
        let (connect, handle) = TcpClientStream::new(
            server,
            None,
            Some(Duration::from_secs(3)),
            TokioRuntimeProvider::new(),
        );
        let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(4), connect).await else {
            return Vec::new();
        };
        let (mut client, bg) = Client::<TokioRuntimeProvider>::new(stream, handle);
        tokio::spawn(bg);
        let answer = tokio::time::timeout(
            Duration::from_secs(4),
            client.query(name, DNSClass::IN, rtype),
        );
        let Ok(Ok(r)) = answer.await else {
            return Vec::new();
        };
        resp = r;
    }
    resp.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            RData::CNAME(c) => Some(c.0.to_ascii().trim_end_matches('.').to_owned()),
            _ => None,
        })
        .collect()
}
