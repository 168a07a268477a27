//! DNS lookups: is the record we published visible yet, and where?
//!
//! Two ways to look, both straight to a server over UDP with EDNS (TCP when the answer is
//! truncated); a name with no records answers an empty list.
//!
//! - [`lookup`] asks one resolver (`dns_resolver`, or the first `nameserver` of
//!   `/etc/resolv.conf`) with recursion desired.
//! - [`authoritative`] asks what every CA vantage point may ask: every address of every name
//!   server of the zone that holds the name (the zone found by an SOA walk, its NS and their
//!   A and AAAA records found through a resolver), without recursion, following a CNAME at
//!   the name into the zone it points to. No cache sits in between, so a record missing from
//!   one lagging secondary is seen missing, and a negative answer is never cached.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::{DnsRequestOptions, DnsResponse, Query};
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType as HickoryType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;

use super::{DnsRecord, Error, RecordType};

/// How long one DNS exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A client for `server`, optionally signing with a TSIG key; its background task runs on the
/// current runtime until the client is dropped.
pub(super) fn client(
    server: SocketAddr,
    signer: Option<hickory_net::proto::rr::TSigner>,
) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::new())
        .with_timeout(Some(TIMEOUT))
        .with_signer(signer)
        .build();
    let (client, background) = Client::from_sender(stream);
    tokio::spawn(background);
    client
}

/// A DNS name from text (a trailing dot optional).
pub(super) fn name(text: &str) -> Result<Name, Error> {
    let mut n = Name::from_ascii(text.trim_end_matches('.'))
        .map_err(|e| Error::Dns(format!("invalid DNS name {text:?}: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

/// Resolves `host:port` (a name or an address) to one socket address.
pub async fn server_addr(host: &str, port: u16) -> Result<SocketAddr, Error> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::Dns(format!("cannot resolve DNS server {host}: {e}")))?
        .next()
        .ok_or_else(|| Error::Dns(format!("DNS server {host} has no address")))
}

/// The resolver to ask: `configured` (`dns_resolver`'s host and port), else the system's.
pub async fn resolver(configured: Option<(&str, u16)>) -> Result<SocketAddr, Error> {
    match configured {
        Some((host, port)) => server_addr(host, port).await,
        None => system_resolver(),
    }
}

/// The system's resolver: the first `nameserver` of `/etc/resolv.conf`.
pub fn system_resolver() -> Result<SocketAddr, Error> {
    let text = crate::safefs::read(std::path::Path::new("/etc/resolv.conf"), 1024 * 1024).map_err(
        |e| {
            Error::Dns(format!(
                "cannot read the system's resolver: {e}; set dns_resolver"
            ))
        },
    )?;
    let conf = resolv_conf::Config::parse(&text).map_err(|e| {
        Error::Dns(format!(
            "cannot parse /etc/resolv.conf: {e}; set dns_resolver"
        ))
    })?;
    conf.nameservers
        .first()
        .map(|ip| SocketAddr::new(ip.into(), 53))
        .ok_or_else(|| Error::Dns("/etc/resolv.conf names no nameserver; set dns_resolver".into()))
}

/// The values of the `rtype` records at `owner` as `server` answers: each TXT record's
/// strings joined, or a CNAME's target without its trailing dot.
pub async fn lookup(
    server: SocketAddr,
    owner: &str,
    rtype: RecordType,
) -> Result<Vec<String>, Error> {
    let qtype = match rtype {
        RecordType::Txt => HickoryType::TXT,
        RecordType::Cname => HickoryType::CNAME,
    };
    let qname = name(owner)?;
    let answer = ask(server, &qname, qtype, true)
        .await
        .map_err(|e| Error::Dns(format!("{server} did not answer for {owner} {rtype}: {e}")))?;
    Ok(values(&answer, &qname, rtype))
}

/// The values of `rtype` at `qname` in `answers`. A TXT name that is an alias is followed
/// along the CNAME chain the answer carries (as a recursive resolver, or an authoritative
/// server holding both names, sends it), so a delegated `_acme-challenge` or `_dnsauth` name
/// is seen holding its target's record.
fn values(
    answers: &[hickory_net::proto::rr::Record],
    qname: &Name,
    rtype: RecordType,
) -> Vec<String> {
    let same = |a: &Name, b: &Name| a.eq_case(b) || a == b;
    let mut chain = vec![qname.clone()];
    if rtype == RecordType::Txt {
        while chain.len() <= MAX_CNAMES {
            let Some(target) = answers.iter().find_map(|r| match &r.data {
                RData::CNAME(t) if chain.last().is_some_and(|at| same(&r.name, at)) => {
                    Some(t.0.clone())
                }
                _ => None,
            }) else {
                break;
            };
            if chain.iter().any(|seen| same(seen, &target)) {
                break;
            }
            chain.push(target);
        }
    }
    let mut out = Vec::new();
    for record in answers
        .iter()
        .filter(|r| chain.iter().any(|at| same(&r.name, at)))
    {
        match (&record.data, rtype) {
            (RData::TXT(txt), RecordType::Txt) => out.push(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            (RData::CNAME(target), RecordType::Cname) => out.push(text(&target.0)),
            _ => {}
        }
    }
    out
}

/// A name as certkeeper writes it: lower case, no trailing dot.
fn text(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// One query to `server`: the answer section (empty for NXDOMAIN and NODATA), over UDP, again
/// over TCP when the UDP answer is truncated.
pub(super) async fn ask(
    server: SocketAddr,
    qname: &Name,
    qtype: HickoryType,
    recursion: bool,
) -> Result<Vec<hickory_net::proto::rr::Record>, String> {
    let answer = |r: Result<DnsResponse, hickory_net::NetError>| match r {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_no_records_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    let query = Query::query(qname.clone(), qtype);
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.recursion_desired = recursion;
    let udp = client(server, None);
    let first = answer(first_response(&udp, query.clone(), options).await)?;
    match first {
        Some(r) if r.metadata.truncation => {
            let tcp = tcp_client(server).await.map_err(|e| e.to_string())?;
            Ok(answer(first_response(&tcp, query, options).await)?
                .map(|r| r.answers.clone())
                .unwrap_or_default())
        }
        Some(r) => Ok(r.answers.clone()),
        None => Ok(Vec::new()),
    }
}

async fn first_response<H: DnsHandle>(
    h: &H,
    query: Query,
    options: DnsRequestOptions,
) -> Result<DnsResponse, hickory_net::NetError> {
    use futures_util::StreamExt;
    match h.lookup(query, options).next().await {
        Some(r) => r,
        None => Err(hickory_net::NetError::from("no answer")),
    }
}

/// A TCP client for `server`.
async fn tcp_client(
    server: SocketAddr,
) -> Result<Client<TokioRuntimeProvider>, hickory_net::NetError> {
    let (connect, handle) =
        TcpClientStream::new(server, None, Some(TIMEOUT), TokioRuntimeProvider::new());
    let stream = connect.await?;
    let (client, background) = Client::with_timeout(stream, handle, TIMEOUT);
    tokio::spawn(background);
    Ok(client)
}

/// The zone that holds `owner` as `server` sees it, found by SOA queries walking up from
/// `owner` (the answer, or the authority section of a negative answer, names the zone; a
/// CNAME at the name itself answers without an SOA, its parent does not).
pub async fn zone_of(server: SocketAddr, owner: &str) -> Result<String, Error> {
    let mut c = client(server, None);
    let mut candidate = owner.trim_end_matches('.').to_owned();
    loop {
        let qname = name(&candidate)?;
        let soa = match c.query(qname.clone(), DNSClass::IN, HickoryType::SOA).await {
            Ok(r) => r
                .answers
                .iter()
                .chain(&r.authorities)
                .find(|rec| rec.record_type() == HickoryType::SOA)
                .map(|soa| text(&soa.name)),
            Err(e) if e.is_no_records_found() => e.into_soa().map(|soa| text(&soa.name)),
            Err(e) => {
                return Err(Error::Dns(format!(
                    "cannot find the zone of {owner} at {server}: {e}"
                )));
            }
        };
        if let Some(zone) = soa {
            return Ok(zone);
        }
        match candidate.split_once('.') {
            Some((_, parent)) if parent.contains('.') => candidate = parent.to_owned(),
            _ => {
                return Err(Error::Dns(format!(
                    "{server} named no zone for {owner} (no SOA)"
                )));
            }
        }
    }
}

/// One authoritative server address of a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServer {
    /// The NS target, no trailing dot.
    pub name: String,
    pub addr: SocketAddr,
}

impl std::fmt::Display for NameServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.addr.ip())
    }
}

/// Every address (A and AAAA, port 53) of every NS of `zone`, as `resolver` names them.
pub async fn name_servers(resolver: SocketAddr, zone: &str) -> Result<Vec<NameServer>, Error> {
    let failed = |e: String| {
        Error::Dns(format!(
            "cannot find the name servers of {zone} at {resolver}: {e}"
        ))
    };
    let zname = name(zone)?;
    let ns = ask(resolver, &zname, HickoryType::NS, true)
        .await
        .map_err(failed)?;
    let mut hosts: Vec<Name> = ns
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(n) => Some(n.0.clone()),
            _ => None,
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() {
        return Err(failed("no NS records".into()));
    }
    let mut out = Vec::new();
    for host in hosts {
        for qtype in [HickoryType::A, HickoryType::AAAA] {
            for r in ask(resolver, &host, qtype, true).await.map_err(failed)? {
                let ip = match r.data {
                    RData::A(a) => std::net::IpAddr::V4(a.0),
                    RData::AAAA(a) => std::net::IpAddr::V6(a.0),
                    _ => continue,
                };
                let server = NameServer {
                    name: text(&host),
                    addr: SocketAddr::new(ip, 53),
                };
                if !out.contains(&server) {
                    out.push(server);
                }
            }
        }
    }
    if out.is_empty() {
        return Err(failed("its NS names have no address".into()));
    }
    Ok(out)
}

/// What one authoritative server address answered for a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Serves,
    Lacks,
    /// No answer (why): counts as lacking only when no other address of the same name server
    /// answered, since an address family this host cannot reach says nothing of what a CA
    /// sees.
    Silent(String),
}

/// Whether `values` (from [`lookup`]) hold `record`'s value.
pub fn holds(values: &[String], record: &DnsRecord) -> bool {
    values.iter().any(|v| match record.rtype {
        RecordType::Txt => *v == record.value,
        RecordType::Cname => v.eq_ignore_ascii_case(&record.value),
    })
}

/// How many CNAMEs [`authoritative`] follows.
const MAX_CNAMES: usize = 8;

/// What every authoritative server of the zone holding `record.name` answers for it, found
/// through `resolver`; a TXT name that is a CNAME is followed into its target's zone.
pub async fn authoritative(
    resolver: SocketAddr,
    record: &DnsRecord,
) -> Result<Vec<(NameServer, Answer)>, Error> {
    let mut owner = record.name.clone();
    let mut out = Vec::new();
    for _ in 0..=MAX_CNAMES {
        let zone = zone_of(resolver, &owner).await?;
        let servers = name_servers(resolver, &zone).await?;
        let qname = name(&owner)?;
        let qtype = match record.rtype {
            RecordType::Txt => HickoryType::TXT,
            RecordType::Cname => HickoryType::CNAME,
        };
        let answers = join_all(servers.iter().map(|s| ask(s.addr, &qname, qtype, false))).await;
        let mut target = None;
        for (server, answer) in servers.into_iter().zip(answers) {
            let answer = match answer {
                Err(e) => Answer::Silent(e),
                Ok(records) if holds(&values(&records, &qname, record.rtype), record) => {
                    Answer::Serves
                }
                Ok(records) => {
                    let alias = (record.rtype == RecordType::Txt)
                        .then(|| values(&records, &qname, RecordType::Cname).pop())
                        .flatten();
                    match alias {
                        Some(t) => {
                            target = Some(t);
                            continue;
                        }
                        None => Answer::Lacks,
                    }
                }
            };
            out.push((server, answer));
        }
        match target {
            Some(t) => owner = t,
            None => return Ok(out),
        }
    }
    Err(Error::Dns(format!(
        "{} is behind more than {MAX_CNAMES} CNAMEs",
        record.name
    )))
}

/// The servers that count as lacking the record, each described: those that answered without
/// it, and those whose every address was silent.
pub fn lacking(answers: &[(NameServer, Answer)]) -> Vec<String> {
    let answered = |n: &str| {
        answers
            .iter()
            .any(|(s, a)| s.name == n && !matches!(a, Answer::Silent(_)))
    };
    answers
        .iter()
        .filter_map(|(s, a)| match a {
            Answer::Serves => None,
            Answer::Lacks => Some(s.to_string()),
            Answer::Silent(why) => (!answered(&s.name)).then(|| format!("{s}: {why}")),
        })
        .collect()
}
