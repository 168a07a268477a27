//! Single-value config types, validated in `Deserialize` so that the toml crate attaches the
//! line and column of a bad value to the error.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Implements `Deserialize` through `FromStr` for a string-valued config type.
macro_rules! deserialize_from_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A humantime duration such as `90s`, `30m`, `6h` or `30d`, between `MIN` and `MAX` seconds:
/// every duration the daemon uses is bounded when the file is read, so no value `check`
/// accepts can overflow a timer or make the daemon spin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur<const MIN: u64, const MAX: u64>(pub Duration);

/// A day, in seconds, for bounds.
pub const DAY: u64 = 86_400;
/// Ten years of 365.25 days (how humantime counts a year, so messages say "10years"), in
/// seconds: the longest duration any key accepts.
pub const TEN_YEARS: u64 = 3652 * DAY + DAY / 2;

/// Parses a humantime duration with the usual message.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration {s:?} ({e}); write e.g. \"90s\", \"30m\", \"6h\" or \"30d\"")
    })
}

/// Checks that `d` lies within `min..=max` seconds.
pub fn check_range(s: &str, d: Duration, min: u64, max: u64) -> Result<Duration, String> {
    let fmt = |secs: u64| humantime::format_duration(Duration::from_secs(secs)).to_string();
    if d < Duration::from_secs(min) || d > Duration::from_secs(max) {
        return Err(format!(
            "duration {s:?} is out of range: write between {} and {}",
            fmt(min),
            fmt(max)
        ));
    }
    Ok(d)
}

impl<const MIN: u64, const MAX: u64> FromStr for Dur<MIN, MAX> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_range(s, parse_duration(s)?, MIN, MAX).map(Self)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Dur<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// When to renew: a fixed time before expiry, or when a share of the lifetime is left.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RenewBefore {
    /// Renew when the certificate expires within this duration.
    Before(Duration),
    /// Renew when this fraction (0 < f < 1) of the certificate's lifetime is left.
    Share(f64),
}

impl RenewBefore {
    /// A third of the lifetime, the default (SPEC.md, `[daemon] renew_before`).
    pub const DEFAULT: Self = Self::Share(1.0 / 3.0);

    /// How long before `not_after` a certificate with this lifetime becomes due.
    pub fn lead(&self, lifetime: Duration) -> Duration {
        match *self {
            Self::Before(d) => d,
            Self::Share(f) => lifetime.mul_f64(f),
        }
    }
}

impl FromStr for RenewBefore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(pct) = s.trim().strip_suffix('%') {
            let value: f64 = pct
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage {s:?}; write e.g. \"33%\""))?;
            if !(value > 0.0 && value < 100.0) {
                return Err(format!(
                    "percentage {s:?} must be between 0% and 100% (exclusive)"
                ));
            }
            return Ok(Self::Share(value / 100.0));
        }
        let d = humantime::parse_duration(s).map_err(|e| {
            format!("invalid renew_before {s:?} ({e}); write a duration like \"30d\" or a share of the lifetime like \"33%\"")
        })?;
        check_range(s, d, 0, TEN_YEARS).map(Self::Before)
    }
}
deserialize_from_str!(RenewBefore);

impl fmt::Display for RenewBefore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Before(d) => write!(f, "{}", humantime::format_duration(*d)),
            Self::Share(s) => write!(f, "{:.0}% of the lifetime", s * 100.0),
        }
    }
}

/// A Unix file mode written in octal, like `"0640"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode(pub u32);

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(Self(m)),
            _ => Err(format!(
                "invalid file mode {s:?}; write octal permission bits like \"0640\""
            )),
        }
    }
}
deserialize_from_str!(Mode);

/// A command as an argument vector: never passed to a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Argv(Vec<String>);

impl Argv {
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl TryFrom<Vec<String>> for Argv {
    type Error = String;
    fn try_from(v: Vec<String>) -> Result<Self, String> {
        match v.first() {
            None => Err("command must not be empty: write it as [\"program\", \"arg\", …]".into()),
            Some(p) if p.is_empty() => Err("the program (first element) must not be empty".into()),
            Some(_) => Ok(Self(v)),
        }
    }
}

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

/// A DNS server: `IP:PORT`, `[IPv6]:PORT`, `HOST:PORT`, or a bare IP address or host (port
/// 53).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsServer(pub Endpoint);

impl FromStr for DnsServer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            return Ok(Self(Endpoint {
                host: ip.to_string(),
                port: 53,
            }));
        }
        match s.parse::<Endpoint>() {
            Ok(e) => Ok(Self(e)),
            Err(_) if !s.is_empty() && !s.contains(':') && !s.contains(char::is_whitespace) => {
                Ok(Self(Endpoint {
                    host: s.to_owned(),
                    port: 53,
                }))
            }
            Err(_) => Err(format!(
                "invalid DNS server {s:?}; write IP:PORT like \"192.0.2.53:53\" (the port defaults to 53)"
            )),
        }
    }
}
deserialize_from_str!(DnsServer);

impl fmt::Display for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A `HOST:PORT` to make a TLS handshake with after a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid endpoint {s:?}; write HOST:PORT like \"127.0.0.1:443\"");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}
deserialize_from_str!(Endpoint);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_before_forms() {
        let day = Duration::from_secs(86_400);
        let cases: &[(&str, Option<Duration>)] = &[
            ("30d", Some(30 * day)),
            ("33%", Some(33 * day)),
            ("50 %", Some(50 * day)),
            ("0%", None),
            ("100%", None),
            ("soon", None),
        ];
        for (input, lead_of_100_days) in cases {
            let got = input
                .parse::<RenewBefore>()
                .ok()
                .map(|r| r.lead(100 * day).as_secs());
            assert_eq!(got, lead_of_100_days.map(|d| d.as_secs()), "{input}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        assert!("10s".parse::<Dur<10, 60>>().is_ok());
        let e = "0s".parse::<Dur<10, 60>>().expect_err("too short");
        assert!(e.contains("write between 10s and 1m"), "{e}");
        assert!("300000000000y".parse::<Dur<0, TEN_YEARS>>().is_err());
        assert!("3653d".parse::<RenewBefore>().is_err());
        assert!("10years".parse::<RenewBefore>().is_ok());
        assert_eq!("192.0.2.53".parse::<DnsServer>().map(|d| d.0.port), Ok(53));
        assert_eq!(
            "[::1]:5353".parse::<DnsServer>().map(|d| d.to_string()),
            Ok("[::1]:5353".into())
        );
        assert!("a b".parse::<DnsServer>().is_err());
    }

    #[test]
    fn modes() {
        assert_eq!("0640".parse::<Mode>(), Ok(Mode(0o640)));
        assert_eq!("600".parse::<Mode>(), Ok(Mode(0o600)));
        assert!("0800".parse::<Mode>().is_err());
        assert!("07777".parse::<Mode>().is_err());
        assert!("".parse::<Mode>().is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            "127.0.0.1:443".parse::<Endpoint>().map(|e| e.to_string()),
            Ok("127.0.0.1:443".into())
        );
        assert_eq!(
            "[::1]:8443".parse::<Endpoint>().map(|e| (e.host, e.port)),
            Ok(("::1".into(), 8443))
        );
        assert!("localhost".parse::<Endpoint>().is_err());
        assert!(":443".parse::<Endpoint>().is_err());
    }
}
