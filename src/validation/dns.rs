//! DNS lookups at a chosen server: is the record we published visible yet?
//!
//! Queries go straight to the given server (`dns_resolver`, or the first `nameserver` of
//! `/etc/resolv.conf`) with recursion desired, over UDP with EDNS. A name with no records
//! answers an empty list; only a failing server is an error.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType as HickoryType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;

use super::{Error, RecordType};

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

/// The values of the `rtype` records at `name` as `server` answers: each TXT record's strings
/// joined, or a CNAME's target without its trailing dot.
pub async fn lookup(
    server: SocketAddr,
    owner: &str,
    rtype: RecordType,
) -> Result<Vec<String>, Error> {
    let mut c = client(server, None);
    let qtype = match rtype {
        RecordType::Txt => HickoryType::TXT,
        RecordType::Cname => HickoryType::CNAME,
    };
    let qname = name(owner)?;
    let response = match c.query(qname.clone(), DNSClass::IN, qtype).await {
        Ok(r) => r,
        Err(e) if e.is_no_records_found() => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Dns(format!(
                "{server} did not answer for {owner} {rtype}: {e}"
            )));
        }
    };
    let mut values = Vec::new();
    for record in &response.answers {
        if !record.name.eq_case(&qname) && record.name != qname {
            continue;
        }
        match (&record.data, rtype) {
            (RData::TXT(txt), RecordType::Txt) => values.push(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            (RData::CNAME(target), RecordType::Cname) => {
                values.push(
                    target
                        .0
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                );
            }
            _ => {}
        }
    }
    Ok(values)
}
