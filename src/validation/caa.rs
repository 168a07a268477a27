//! CAA pre-flight (RFC 8659, with RFC 8657's `accounturi` and `validationmethods`): would the
//! CA's own CAA check let it issue for these names? Asked before each new request and by
//! `check --online`, so that a name its records forbid costs no request and gets a message
//! that names the record to add.
//!
//! For each name the relevant record set is found by climbing from the name (less a wildcard
//! label) towards the root, stopping at the first name that has CAA records; the root itself is
//! not asked. A wildcard is judged by `issuewild` when the set has one, else by `issue`. A set
//! with neither allows every CA; an unknown tag marked critical allows none. A record allows
//! the CA when its issuer domain is one of the CA's, its `accounturi` (if any) is the account
//! certkeeper uses, and its `validationmethods` (if any) include the method it would use.
//!
//! What was found for a name is kept for a minute at most (less when the records' TTL says
//! so) in a [`Cache`] the engine owns, so a burst of renewals for the same names (a fleet
//! after a mass revocation, many certificates on one domain) asks DNS once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_net::proto::rr::rdata::CAA;
use hickory_net::proto::rr::{RData, RecordType};

use super::Error;
use super::dns;

/// The issuer domain names that DigiCert honours in CAA records, for CertCentral certificates.
pub const DIGICERT: &[&str] = &[
    "digicert.com",
    "www.digicert.com",
    "digicert.ne.jp",
    "cybertrust.ne.jp",
    "geotrust.com",
    "rapidssl.com",
    "thawte.com",
    "symantec.com",
];

/// Property tags a CA understands; another one marked critical forbids issuance.
const KNOWN_TAGS: &[&str] = &[
    "issue",
    "issuewild",
    "iodef",
    "issuemail",
    "issuevmc",
    "contactemail",
    "contactphone",
];

/// What the CA checks a record against.
#[derive(Debug, Clone, Default)]
pub struct Issuer {
    /// The CA's issuer domain names (DigiCert's, or an ACME directory's `caaIdentities`),
    /// preferred first.
    pub identities: Vec<String>,
    /// The ACME account URL, checked against `accounturi`; none for CertCentral, whose
    /// accounts have no such URL, so a record with `accounturi` does not allow it.
    pub account_uri: Option<String>,
    /// The ACME validation method (`http-01`, `dns-01`), checked against
    /// `validationmethods`; none for CertCentral, whose methods have no registered label.
    pub method: Option<String>,
}

impl Issuer {
    /// DigiCert, for CertCentral certificates.
    pub fn digicert() -> Self {
        Self {
            identities: DIGICERT.iter().map(|s| (*s).to_owned()).collect(),
            ..Self::default()
        }
    }
}

/// The relevant record set of a name: where it was found, and its records.
#[derive(Debug, Clone)]
pub struct Found {
    pub owner: String,
    pub records: Vec<CAA>,
}

/// For each of `names` the CAA records forbid `issuer`, a sentence saying which records and
/// what to add. Asked through `resolver` with recursion, the names at once. An error when a
/// lookup fails.
pub async fn refusals(
    resolver: SocketAddr,
    names: &[String],
    issuer: &Issuer,
    cache: &Cache,
) -> Result<Vec<String>, Error> {
    let verdicts = futures_util::future::join_all(names.iter().map(|name| async move {
        Ok(cache
            .relevant(resolver, name)
            .await?
            .and_then(|found| judge(name, &found, issuer)))
    }))
    .await;
    verdicts.into_iter().filter_map(Result::transpose).collect()
}

/// How long a name's relevant record set is kept at most.
const CACHE_FOR: Duration = Duration::from_secs(60);
/// How many names' answers are kept; past it the cache starts over.
const CACHE_NAMES: usize = 10_000;

/// The CAA records at one name (none is an answer too), and until when they may be used.
type Entry = (Instant, Vec<CAA>);

/// CAA answers found recently, by resolver and name: names that share a parent (every
/// `*.example.com` certificate climbs through `example.com`) ask it once.
#[derive(Debug, Default)]
pub struct Cache(Mutex<HashMap<(SocketAddr, String), Entry>>);

impl Cache {
    /// The relevant CAA record set for `name`: climbing from the name (less a wildcard label)
    /// towards the root, the first name that has CAA records.
    async fn relevant(&self, resolver: SocketAddr, name: &str) -> Result<Option<Found>, Error> {
        let base = name.strip_prefix("*.").unwrap_or(name);
        let labels: Vec<&str> = base.trim_end_matches('.').split('.').collect();
        for start in 0..labels.len() {
            let owner = labels[start..].join(".");
            let records = self.at(resolver, &owner).await?;
            if !records.is_empty() {
                return Ok(Some(Found { owner, records }));
            }
        }
        Ok(None)
    }

    /// The CAA records at `owner`, asked at most once a minute (less when their TTL says so).
    async fn at(&self, resolver: SocketAddr, owner: &str) -> Result<Vec<CAA>, Error> {
        let key = (resolver, owner.to_owned());
        let now = Instant::now();
        if let Ok(map) = self.0.lock()
            && let Some((until, records)) = map.get(&key)
            && *until > now
        {
            return Ok(records.clone());
        }
        let qname = dns::name(owner)?;
        let answers = dns::ask(resolver, &qname, RecordType::CAA, true)
            .await
            .map_err(|e| Error::Dns(format!("{resolver} did not answer for {owner} CAA: {e}")))?;
        let ttl = answers.iter().map(|r| r.ttl).min().map_or(CACHE_FOR, |t| {
            Duration::from_secs(u64::from(t)).min(CACHE_FOR)
        });
        let records: Vec<CAA> = answers
            .into_iter()
            .filter_map(|r| match r.data {
                RData::CAA(caa) => Some(caa),
                _ => None,
            })
            .collect();
        if let Ok(mut map) = self.0.lock() {
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= CACHE_NAMES {
                map.clear();
            }
            map.insert(key, (now + ttl, records.clone()));
        }
        Ok(records)
    }
}

/// Why `found` forbids `issuer` to issue for `name`, if it does.
pub fn judge(name: &str, found: &Found, issuer: &Issuer) -> Option<String> {
    let id = issuer.identities.first().map_or("the CA", String::as_str);
    let listed = || {
        found
            .records
            .iter()
            .map(show)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(r) = found
        .records
        .iter()
        .find(|r| r.issuer_critical && !KNOWN_TAGS.iter().any(|t| r.tag.eq_ignore_ascii_case(t)))
    {
        return Some(format!(
            "the CAA record `{}` at {} has a critical tag no CA understands, so no CA may issue for {name}",
            show(r),
            found.owner
        ));
    }
    let tagged = |tag: &str| -> Vec<&CAA> {
        found
            .records
            .iter()
            .filter(|r| r.tag.eq_ignore_ascii_case(tag))
            .collect()
    };
    let wild = name.starts_with("*.") && !tagged("issuewild").is_empty();
    let tag = if wild { "issuewild" } else { "issue" };
    let set = tagged(tag);
    if set.is_empty() {
        return None;
    }
    let allows = |r: &&CAA| {
        let Ok((Some(domain), params)) = r.value_as_issue() else {
            return false;
        };
        let domain = domain.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        issuer
            .identities
            .iter()
            .any(|i| i.eq_ignore_ascii_case(&domain))
            && params.iter().all(|kv| match kv.key() {
                "accounturi" => issuer.account_uri.as_deref() == Some(kv.value()),
                "validationmethods" => issuer
                    .method
                    .as_deref()
                    .is_none_or(|m| kv.value().split(',').any(|v| v.trim() == m)),
                _ => true,
            })
    };
    if set.iter().any(allows) {
        return None;
    }
    let mut fix = format!("{}. CAA 0 {tag} \"{id}", found.owner);
    if let Some(account) = &issuer.account_uri
        && set.iter().any(|r| {
            r.value_as_issue()
                .is_ok_and(|(_, p)| p.iter().any(|kv| kv.key() == "accounturi"))
        })
    {
        fix.push_str(&format!("; accounturi={account}"));
    }
    fix.push('"');
    Some(format!(
        "the CAA records at {} ({}) do not allow {id} to issue for {name}: add `{fix}`, or issue elsewhere",
        found.owner,
        listed()
    ))
}

/// A record as a zone file shows it: `0 issue "digicert.com"`.
fn show(r: &CAA) -> String {
    format!(
        "{} {} \"{}\"",
        r.flags(),
        r.tag,
        String::from_utf8_lossy(&r.value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(records: &[(&str, &str)]) -> Found {
        Found {
            owner: "example.test".into(),
            records: records
                .iter()
                .map(|(tag, value)| {
                    let mut caa = CAA::new_issue(false, None, Vec::new());
                    caa.tag = (*tag).to_owned();
                    caa.value = value.as_bytes().to_vec();
                    caa
                })
                .collect(),
        }
    }

    fn acme(account: &str, method: &str) -> Issuer {
        Issuer {
            identities: vec!["ca.test".into()],
            account_uri: Some(account.into()),
            method: Some(method.into()),
        }
    }

    /// A name, its records (tag, value), the CA, whether it may issue, and what the case shows.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a Issuer, bool, &'a str);

    #[test]
    fn table() {
        let digicert = Issuer::digicert();
        let a = "https://ca.test/acct/1";
        let cases: [Case<'_>; 12] = [
            (
                "x.example.test",
                &[("issue", "digicert.com")],
                &digicert,
                true,
                "DigiCert named",
            ),
            (
                "x.example.test",
                &[("issue", "thawte.com")],
                &digicert,
                true,
                "a DigiCert brand",
            ),
            (
                "x.example.test",
                &[("issue", "letsencrypt.org")],
                &digicert,
                false,
                "another CA",
            ),
            (
                "x.example.test",
                &[("issue", ";")],
                &digicert,
                false,
                "no CA at all",
            ),
            (
                "x.example.test",
                &[("iodef", "mailto:a@example.test")],
                &digicert,
                true,
                "no issue tag",
            ),
            (
                "*.example.test",
                &[("issue", "digicert.com"), ("issuewild", ";")],
                &digicert,
                false,
                "issuewild wins for a wildcard",
            ),
            (
                "*.example.test",
                &[("issue", "digicert.com")],
                &digicert,
                true,
                "issue applies to a wildcard without issuewild",
            ),
            (
                "x.example.test",
                &[("issue", "digicert.com; accounturi=https://x/1")],
                &digicert,
                false,
                "accounturi excludes CertCentral",
            ),
            (
                "x.example.test",
                &[("issue", &format!("ca.test; accounturi={a}"))],
                &acme(a, "dns-01"),
                true,
                "our account",
            ),
            (
                "x.example.test",
                &[("issue", "ca.test; accounturi=https://ca.test/acct/2")],
                &acme(a, "dns-01"),
                false,
                "another account",
            ),
            (
                "x.example.test",
                &[("issue", "ca.test; validationmethods=http-01")],
                &acme(a, "dns-01"),
                false,
                "another method",
            ),
            (
                "x.example.test",
                &[("issue", "ca.test; validationmethods=dns-01,http-01")],
                &acme(a, "dns-01"),
                true,
                "our method listed",
            ),
        ];
        for (name, records, issuer, allowed, what) in cases {
            let verdict = judge(name, &found(records), issuer);
            assert_eq!(verdict.is_none(), allowed, "{what}: {verdict:?}");
        }
        let why = judge(
            "x.example.test",
            &found(&[("issue", "letsencrypt.org")]),
            &digicert,
        )
        .expect("refused");
        assert!(
            why.contains("add `example.test. CAA 0 issue \"digicert.com\"`"),
            "{why}"
        );
    }

    #[test]
    fn an_unknown_critical_tag_forbids_every_ca() {
        let mut f = found(&[("issue", "digicert.com"), ("future", "x")]);
        f.records[1].issuer_critical = true;
        let digicert = Issuer {
            identities: vec!["digicert.com".into()],
            ..Issuer::default()
        };
        assert!(judge("example.test", &f, &digicert).is_some());
    }
}
