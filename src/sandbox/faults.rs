//! Faults the sandbox can inject, for tests and demos: `KIND[=ARG][:COUNT]`, e.g.
//! `rate-limit:3` (the next 3 API calls get 429), `server-error=503:1`, `slow=5s:2`,
//! `slow-download=5s:3` (the next 3 certificate downloads answer after 5 s),
//! `wrong-key:1` (the next issued certificate is for another key).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One kind of misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FaultKind {
    /// `429 request_limit_exceeded` without `Retry-After`.
    RateLimit,
    /// `429` with `Retry-After: N` seconds.
    RateLimitAfter(u64),
    /// A 5xx with the error envelope.
    ServerError(u16),
    /// Answer after this delay.
    Slow(Duration),
    /// A 400 whose error code and message carry terminal escapes, a forged log line and
    /// 600 KB of text.
    HostileError,
    /// Answer the next certificate download after this delay (other calls are not delayed).
    SlowDownload(Duration),
    /// Accept a reissue or duplicate, then drop the connection without an answer.
    DropSubmitResponse,
    /// The next issued certificate carries another public key.
    WrongKey,
    /// The next issued certificate lacks its last requested name.
    MissingName,
    /// The next issued certificate has already expired.
    Expired,
    /// Downloads of the next issued certificate are cut in the middle of the PEM.
    TruncatedPem,
    /// The next issued certificate is signed by a key other than the intermediate's.
    BadChain,
    /// The next answer is a body that never ends (a misbehaving proxy).
    EndlessBody,
    /// Order info serves `"organization": []`, the empty-object quirk list orders is
    /// documented to have (certcentral-api.md §8), to keep lenient clients tested.
    OrganizationEmptyArray,
    /// The next `check-dcv` answers "not found" without looking, as a CA whose check lags
    /// behind what is published.
    DcvNotYet,
    /// Order info leaves out `status`, which DigiCert documents as always there (a renamed
    /// field, a broken proxy): clients must refuse the answer, not guess.
    OrderWithoutStatus,
}

impl FaultKind {
    /// Whether the fault shapes an API answer (rather than an issued certificate).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Self::RateLimit
                | Self::RateLimitAfter(_)
                | Self::ServerError(_)
                | Self::Slow(_)
                | Self::HostileError
                | Self::EndlessBody
        )
    }
}

/// A fault and how many times it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub count: u32,
}

impl Fault {
    pub fn once(kind: FaultKind) -> Self {
        Self { kind, count: 1 }
    }
    pub fn times(kind: FaultKind, count: u32) -> Self {
        Self { kind, count }
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (spec, count) = match s.rsplit_once(':') {
            Some((spec, n)) => (
                spec,
                n.parse()
                    .map_err(|_| format!("invalid count in fault {s:?}"))?,
            ),
            None => (s, 1),
        };
        let (name, arg) = spec
            .split_once('=')
            .map_or((spec, None), |(n, a)| (n, Some(a)));
        let need = |what: &str| arg.ok_or_else(|| format!("fault {name} needs ={what}"));
        let kind = match name {
            "rate-limit" => match arg {
                Some(a) => FaultKind::RateLimitAfter(
                    a.parse().map_err(|_| format!("invalid seconds {a:?}"))?,
                ),
                None => FaultKind::RateLimit,
            },
            "server-error" => FaultKind::ServerError(match arg {
                Some(a) => a
                    .parse()
                    .ok()
                    .filter(|c| (500..600).contains(c))
                    .ok_or_else(|| format!("invalid 5xx status {a:?}"))?,
                None => 503,
            }),
            "slow" => FaultKind::Slow(
                humantime::parse_duration(need("DURATION")?).map_err(|e| e.to_string())?,
            ),
            "slow-download" => FaultKind::SlowDownload(
                humantime::parse_duration(need("DURATION")?).map_err(|e| e.to_string())?,
            ),
            "drop-submit-response" => FaultKind::DropSubmitResponse,
            "wrong-key" => FaultKind::WrongKey,
            "missing-name" => FaultKind::MissingName,
            "expired" => FaultKind::Expired,
            "truncated-pem" => FaultKind::TruncatedPem,
            "bad-chain" => FaultKind::BadChain,
            "endless-body" => FaultKind::EndlessBody,
            "organization-empty-array" => FaultKind::OrganizationEmptyArray,
            "order-without-status" => FaultKind::OrderWithoutStatus,
            "hostile-error" => FaultKind::HostileError,
            "dcv-not-yet" => FaultKind::DcvNotYet,
            other => {
                return Err(format!(
                    "unknown fault {other:?}; known: rate-limit[=SECS], server-error[=5xx], slow=DURATION, slow-download=DURATION, drop-submit-response, wrong-key, missing-name, expired, truncated-pem, bad-chain, endless-body, organization-empty-array, order-without-status, hostile-error, dcv-not-yet"
                ));
            }
        };
        Ok(Self { kind, count })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}×{}", self.kind, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_faults() {
        assert_eq!(
            "rate-limit:3".parse(),
            Ok(Fault::times(FaultKind::RateLimit, 3))
        );
        assert_eq!(
            "rate-limit=7".parse(),
            Ok(Fault::once(FaultKind::RateLimitAfter(7)))
        );
        assert_eq!(
            "server-error=500:2".parse(),
            Ok(Fault::times(FaultKind::ServerError(500), 2))
        );
        assert_eq!(
            "slow=2s".parse(),
            Ok(Fault::once(FaultKind::Slow(Duration::from_secs(2))))
        );
        assert!("server-error=404".parse::<Fault>().is_err());
        assert!("gremlins".parse::<Fault>().is_err());
    }
}
