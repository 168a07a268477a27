//! RFC 2136 dynamic updates signed with TSIG (RFC 8945): the built-in DNS publisher.
//!
//! A record is *added* to its RRset (existing TXT records, such as SPF, are kept) and removed
//! by *deleting that exact record* (RFC 2136 §2.5.4), so publishing twice or removing twice is
//! harmless. The zone to update is the configured one, or found by an SOA query for the
//! record's name: the answer (or the authority section of a negative answer) names the zone.
//!
//! The TSIG key comes from a BIND key file (`tsig-keygen` output), which must not be readable
//! by group or others; the secret never leaves this module.

use std::net::SocketAddr;
use std::path::Path;

use hickory_net::client::ClientHandle;
use hickory_net::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_net::proto::rr::rdata::{CNAME, TXT};
use hickory_net::proto::rr::{Name, RData, Record, RecordSet, TSigner};

use super::dns::{client, name};
use super::{DnsRecord, Error, RecordType};

/// The TTL of published validation records: short, they live for minutes.
pub const TTL: u32 = 60;

/// A TSIG key: its name, algorithm and secret. `Debug` never shows the secret.
#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    /// Reads a BIND key file (refused if group or others can read it).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = crate::safefs::read_private(path, "TSIG key file").map_err(Error::Key)?;
        Self::parse(&text).map_err(|m| Error::Key(format!("TSIG key file {}: {m}", path.display())))
    }

    /// Parses BIND's key-file syntax:
    /// `key "name" { algorithm hmac-sha256; secret "base64"; };` (comments `#`, `//`, `/* */`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let tokens = tokenize(text)?;
        let mut t = tokens.iter().map(String::as_str).peekable();
        if t.next() != Some("key") {
            return Err("expected `key \"NAME\" { … };`".into());
        }
        let name = t
            .next()
            .filter(|n| *n != "{")
            .ok_or("the key has no name")?
            .to_owned();
        if t.next() != Some("{") {
            return Err("expected `{` after the key name".into());
        }
        let (mut algorithm, mut secret) = (None, None);
        loop {
            match t.next() {
                Some("}") => break,
                Some("algorithm") => {
                    algorithm = Some(
                        t.next()
                            .ok_or("algorithm has no value")?
                            .to_ascii_lowercase(),
                    );
                }
                Some("secret") => secret = Some(t.next().ok_or("secret has no value")?.to_owned()),
                Some(other) => return Err(format!("unknown statement {other:?} in the key")),
                None => return Err("the key's `{` is not closed".into()),
            }
            if t.next() != Some(";") {
                return Err("expected `;` after each statement".into());
            }
        }
        let algorithm = algorithm.ok_or("the key has no algorithm")?;
        let secret = secret.ok_or("the key has no secret")?;
        use base64::Engine;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.as_bytes())
            .map_err(|e| format!("the secret is not base64: {e}"))?;
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        let key = Self {
            name: name.trim_end_matches('.').to_owned(),
            algorithm,
            secret,
        };
        key.tsig_algorithm()?;
        Ok(key)
    }

    fn tsig_algorithm(&self) -> Result<TsigAlgorithm, String> {
        match self.algorithm.as_str() {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            other => Err(format!(
                "algorithm {other:?} is not supported; use hmac-sha256, hmac-sha384 or hmac-sha512 (tsig-keygen -a hmac-sha256 NAME)"
            )),
        }
    }

    fn signer(&self) -> Result<TSigner, Error> {
        let algorithm = self.tsig_algorithm().map_err(Error::Key)?;
        TSigner::new(self.secret.clone(), algorithm, name(&self.name)?, 300)
            .map_err(|e| Error::Key(format!("TSIG key {}: {e}", self.name)))
    }
}

/// Splits BIND syntax into words, quoted strings and `{ } ;`, dropping comments.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => while chars.next().is_some_and(|c| c != '\n') {},
            '/' if chars.peek() == Some(&'/') => while chars.next().is_some_and(|c| c != '\n') {},
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                        None => return Err("a /* comment is not closed".into()),
                    }
                }
            }
            '{' | '}' | ';' => out.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("a quoted string is not closed".into()),
                    }
                }
                out.push(s);
            }
            c => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// An RFC 2136 server and the key that signs updates to it.
#[derive(Debug, Clone)]
pub struct Updater {
    pub server: SocketAddr,
    key: TsigKey,
    zone: Option<String>,
}

impl Updater {
    pub fn new(server: SocketAddr, key: TsigKey, zone: Option<String>) -> Self {
        Self { server, key, zone }
    }

    /// The zone that holds `owner`: the configured one, or found by SOA queries, walking up
    /// from `owner` (a CNAME at the name itself answers without an SOA; its parent does not).
    pub async fn zone_for(&self, owner: &str) -> Result<String, Error> {
        if let Some(z) = &self.zone {
            return Ok(z.clone());
        }
        super::dns::zone_of(self.server, owner)
            .await
            .map_err(|e| Error::Dns(format!("{e}; set zone in [[dns_update]]")))
    }

    /// The zone for `record` as a name, refused when it does not hold the record (an update
    /// for a name outside its zone is malformed).
    fn zone_name(&self, record: &DnsRecord, zone: &str) -> Result<Name, Error> {
        let z = name(zone)?;
        if !z.zone_of(&name(&record.name)?) {
            return Err(Error::Dns(format!(
                "{record} is not in zone {zone}: fix zone in [[dns_update]] (or leave it out to find the zone)"
            )));
        }
        Ok(z)
    }

    fn rrset(record: &DnsRecord, ttl: u32) -> Result<RecordSet, Error> {
        let owner = name(&record.name)?;
        let data = match record.rtype {
            RecordType::Txt => RData::TXT(TXT::new(vec![record.value.clone()])),
            RecordType::Cname => RData::CNAME(CNAME(name(&record.value)?)),
        };
        Ok(RecordSet::from(Record::from_rdata(owner, ttl, data)))
    }

    /// Adds `record` to its RRset.
    pub async fn add(&self, record: &DnsRecord) -> Result<(), Error> {
        let zone = self.zone_for(&record.name).await?;
        let mut c = client(self.server, Some(self.key.signer()?));
        let rrset = Self::rrset(record, TTL)?;
        let zone_name = self.zone_name(record, &zone)?;
        let answer = c
            .append(rrset, zone_name, false)
            .await
            .map_err(|e| self.failed("add", record, &zone, e))?;
        accepted(&answer).map_err(|code| self.failed("add", record, &zone, code))
    }

    /// Deletes exactly `record` (nothing else at that name); a missing record is fine.
    pub async fn delete(&self, record: &DnsRecord) -> Result<(), Error> {
        let zone = self.zone_for(&record.name).await?;
        let mut c = client(self.server, Some(self.key.signer()?));
        let rrset = Self::rrset(record, 0)?;
        let zone_name = self.zone_name(record, &zone)?;
        let answer = c
            .delete_by_rdata(rrset, zone_name)
            .await
            .map_err(|e| self.failed("delete", record, &zone, e))?;
        accepted(&answer).map_err(|code| self.failed("delete", record, &zone, code))
    }

    fn failed(
        &self,
        what: &str,
        record: &DnsRecord,
        zone: &str,
        e: impl std::fmt::Display,
    ) -> Error {
        Error::Dns(format!(
            "{} refused to {what} {record} in zone {zone} (key {}): {e}",
            self.server, self.key.name
        ))
    }
}

/// Whether the server applied the update: an answer is not a yes, its response code is
/// (REFUSED, NOTAUTH or SERVFAIL arrive as answers).
fn accepted(answer: &hickory_net::proto::op::DnsResponse) -> Result<(), String> {
    match answer.metadata.response_code {
        hickory_net::proto::op::ResponseCode::NoError => Ok(()),
        code => Err(format!(
            "the server answered {code} (rcode {})",
            u16::from(code)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_key_files() {
        let k = TsigKey::parse(
            "# made by tsig-keygen\nkey \"certkeeper-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\";\n};\n",
        )
        .expect("parses");
        assert_eq!(
            (k.name.as_str(), k.algorithm.as_str()),
            ("certkeeper-key", "hmac-sha256")
        );
        assert!(
            !format!("{k:?}").contains("c2Vj"),
            "the secret never prints"
        );
        let k =
            TsigKey::parse("/* c */ key k. { secret \"AAAA\"; // x\n algorithm HMAC-SHA512; };")
                .expect("any order, comments");
        assert_eq!(
            (k.name.as_str(), k.algorithm.as_str()),
            ("k", "hmac-sha512")
        );
        for (bad, why) in [
            ("", "expected `key"),
            (
                "key k { algorithm hmac-md5; secret \"AAAA\"; };",
                "not supported",
            ),
            ("key k { algorithm hmac-sha256; };", "no secret"),
            (
                "key k { algorithm hmac-sha256; secret \"!!\"; };",
                "not base64",
            ),
            (
                "key k { algorithm hmac-sha256 secret \"AAAA\"; };",
                "expected `;`",
            ),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA\";",
                "not closed",
            ),
            ("key \"k { };", "not closed"),
        ] {
            let e = TsigKey::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
