//! CertCentral's domain validation for a request: the order's random value (from the 201, order
//! info or `dcv-random-value`), the method switched when the order has another, the files or
//! records to publish for every name, and `check-dcv` once they are visible.

use tracing::{info, warn};

use super::client;
use crate::certcentral;
use crate::model::{DcvMethod, Method, unix_now};
use crate::renewal::issuer::{Answer, Checked, Round, Wanted, WantedKind, retry_or_restart};
use crate::renewal::step::RandomValue;
use crate::renewal::{Attempt, Ctx, Error, Failure, OrderSnapshot, Request, Step, parse_instant};
use crate::validation::{DnsRecord, RecordType};

/// Answers to `check-dcv` that mean "not yet", not a failure (dcv.md).
const NOT_YET: &[&str] = &[
    "invalid_dns_txt",
    "file_random_value_not_found",
    "invalid_dns_cname",
    "dcv_check_failed",
];

/// The random value and what it must be published as, for every name of the request.
pub(in crate::renewal::issuer) async fn round(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    o: &OrderSnapshot,
    request: &Request,
    here: &Step,
) -> Result<Round, Failure> {
    let Request::CertCentral {
        request_id,
        certificate_id,
        random_value,
        method_set,
        ..
    } = request
    else {
        return Err(Failure::new(
            Error::Other("a CertCentral attempt with an ACME request".into()),
            Step::Idle,
        ));
    };
    let now = unix_now();
    let method = ctx.cert.validation.dcv_method;
    let switch = !method_set
        && o.dcv_method
            .as_deref()
            .is_some_and(|m| !m.eq_ignore_ascii_case(method.as_str()));
    let usable = random_value
        .clone()
        .filter(|v| v.expires.is_none_or(|t| t > now));
    let value = match (switch, usable) {
        (false, Some(v)) => v,
        _ => {
            let cc = client(ctx)?;
            let fresh = if switch {
                // The order's method differs: switch it (the answer carries the value).
                info!(cert = %ctx.cert.name, order_id = o.order_id, from = o.dcv_method.as_deref().unwrap_or(""), to = %method, "switching the order's DCV method");
                cc.set_dcv_method(o.order_id, method.as_str()).await
            } else {
                match (&o.dcv_random_value, random_value) {
                    // Order info carried a value and none expired yet: use it.
                    (Some(v), None) if !v.trim().is_empty() => Ok(certcentral::DcvRandomValue {
                        dcv_random_value: v.clone(),
                        expiration_date: None,
                    }),
                    _ => cc.dcv_random_value(o.order_id).await,
                }
            }
            .map_err(|e| retry_or_restart(e, here))?;
            if random_value.is_some() && !switch {
                info!(cert = %ctx.cert.name, order_id = o.order_id, "the random value expired; publishing the new one");
            }
            RandomValue {
                value: fresh.dcv_random_value,
                expires: fresh.expiration_date.as_deref().and_then(parse_instant),
            }
        }
    };
    // The value reaches files, DNS and hooks: only what DigiCert's values look like.
    if !is_random_value(&value.value) {
        let shown: String = value.value.chars().take(40).collect();
        return Err(Failure::new(
            Error::Other(format!(
                "CertCentral sent a random value that is not 8 to 128 letters, digits, '-' or '_' ({shown:?}); nothing was published"
            )),
            Step::Idle,
        ));
    }
    let records = dcv_records(
        method,
        ctx.cert.validation.dnsauth_label,
        &attempt.names,
        &value.value,
    );
    Ok(Round {
        request: Request::CertCentral {
            request_id: *request_id,
            certificate_id: *certificate_id,
            random_value: Some(value),
            method_set: true,
            issued: false,
        },
        records,
        done: None,
    })
}

/// What CertCentral checks for each name (dcv.md): one file for `http-token`; for the DNS
/// methods one record per distinct domain (`*.example.com` is validated at `example.com`).
pub(crate) fn dcv_records(
    method: DcvMethod,
    dnsauth: bool,
    names: &[String],
    value: &str,
) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = Vec::new();
    if method == DcvMethod::HttpToken {
        out.push(Wanted {
            domain: names.first().cloned().unwrap_or_default(),
            what: WantedKind::File {
                path: ".well-known/pki-validation/fileauth.txt".into(),
                content: value.to_owned(),
            },
        });
        return out;
    }
    for name in names {
        let domain = crate::model::validation_domain(name).to_owned();
        let record = match method {
            DcvMethod::DnsTxtToken => DnsRecord {
                name: if dnsauth {
                    format!("_dnsauth.{domain}")
                } else {
                    domain.clone()
                },
                rtype: RecordType::Txt,
                value: value.to_owned(),
            },
            DcvMethod::DnsCnameToken => DnsRecord {
                name: format!("_dnsauth.{domain}"),
                rtype: RecordType::Cname,
                value: format!("{value}.dcv.digicert.com"),
            },
            DcvMethod::None | DcvMethod::HttpToken => continue,
        };
        if !out
            .iter()
            .any(|w| w.what == WantedKind::Dns(record.clone()))
        {
            out.push(Wanted {
                domain,
                what: WantedKind::Dns(record),
            });
        }
    }
    out
}

/// `PUT …/check-dcv`: done, or "not yet" with CertCentral's answer.
pub(in crate::renewal::issuer) async fn check(
    ctx: &mut Ctx<'_>,
    attempt: &Attempt,
    o: &OrderSnapshot,
    request: &Request,
    here: &Step,
) -> Result<Checked, Failure> {
    let cc = client(ctx)?;
    match cc.check_dcv(o.order_id).await {
        Ok(answer) => {
            crate::metrics::count_dcv_check("valid");
            let unvalidated: Vec<String> = answer
                .dns_name_validations
                .iter()
                .filter(|n| {
                    !matches!(
                        n.status.to_ascii_lowercase().as_str(),
                        "approved" | "valid" | "validated"
                    )
                })
                .map(|n| n.dns_name.clone())
                .collect();
            let dcv_valid = answer
                .dcv_status
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("valid"));
            if !dcv_valid || !unvalidated.is_empty() {
                return Ok(Checked::NotYet {
                    answer: format!(
                        "dcv_status {}",
                        answer.dcv_status.as_deref().unwrap_or("pending")
                    ),
                    unvalidated,
                });
            }
            let certificate_id = answer.certificate_id.or(match request {
                Request::CertCentral { certificate_id, .. } => *certificate_id,
                Request::Acme { .. } => None,
            });
            let issued = answer
                .order_status
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("issued"))
                && certificate_id.is_some()
                && o.method == Method::Reissue;
            // Issued with its id: the poll downloads it at once.
            Ok(Checked::Done(Box::new(Answer::Pending(
                Request::CertCentral {
                    request_id: request.request_id(),
                    certificate_id,
                    random_value: None,
                    method_set: false,
                    issued,
                },
            ))))
        }
        Err(e) if NOT_YET.iter().any(|c| e.has_code(c)) => {
            crate::metrics::count_dcv_check("not_yet");
            let answer = e
                .api_errors()
                .first()
                .map_or_else(|| e.to_string(), ToString::to_string);
            Ok(Checked::NotYet {
                answer,
                unvalidated: attempt
                    .names
                    .iter()
                    .map(|n| crate::model::validation_domain(n).to_owned())
                    .fold(Vec::new(), |mut v, n| {
                        if !v.contains(&n) {
                            v.push(n);
                        }
                        v
                    }),
            })
        }
        Err(e) if e.is_retryable() => {
            crate::metrics::count_dcv_check("error");
            Err(Failure::new(e, here.clone()))
        }
        // Anything else: perhaps the order is no longer pending (DigiCert validated it by
        // itself); if so, the poll finds the certificate, else it is "not yet", with the
        // answer shown as it is.
        Err(e) => {
            crate::metrics::count_dcv_check("error");
            warn!(cert = %ctx.cert.name, order_id = o.order_id, error = %e, "CertCentral refused the DCV check");
            let order = cc
                .order_info(o.order_id)
                .await
                .map_err(|e| retry_or_restart(e, here))?;
            let status = order.status.to_ascii_lowercase();
            let moved_on = matches!(status.as_str(), "issued" | "approved")
                && (o.method == Method::Duplicate || order.certificate.id != o.certificate_id);
            if moved_on {
                return Ok(Checked::Done(Box::new(Answer::Pending(request.clone()))));
            }
            Ok(Checked::NotYet {
                answer: e
                    .api_errors()
                    .first()
                    .map_or_else(|| e.to_string(), ToString::to_string),
                unvalidated: attempt.names.clone(),
            })
        }
    }
}

/// Whether `v` looks like a CertCentral random value: 8 to 128 ASCII letters, digits, `-` or
/// `_` (DigiCert's are 32 hexadecimal digits; dcv.md).
fn is_random_value(v: &str) -> bool {
    (8..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcv_records_per_method() {
        let names = vec![
            "example.test".to_owned(),
            "*.example.test".to_owned(),
            "www.example.test".to_owned(),
        ];
        let http = dcv_records(DcvMethod::HttpToken, false, &names[..1], "v1");
        assert_eq!(http.len(), 1, "one file serves every name");
        let txt = dcv_records(DcvMethod::DnsTxtToken, false, &names, "v1");
        let owners: Vec<String> = txt
            .iter()
            .filter_map(|w| match &w.what {
                WantedKind::Dns(r) => Some(format!("{} {}", r.name, r.value)),
                WantedKind::File { .. } => None,
            })
            .collect();
        assert_eq!(
            owners,
            ["example.test v1", "www.example.test v1"],
            "the wildcard is validated at its base, once"
        );
        let label = dcv_records(DcvMethod::DnsTxtToken, true, &names[..1], "v1");
        assert!(matches!(&label[0].what, WantedKind::Dns(r) if r.name == "_dnsauth.example.test"));
        let cname = dcv_records(DcvMethod::DnsCnameToken, false, &names[..1], "v1");
        assert!(matches!(&cname[0].what, WantedKind::Dns(r)
            if r.name == "_dnsauth.example.test" && r.rtype == RecordType::Cname && r.value == "v1.dcv.digicert.com"));
    }

    #[test]
    fn only_values_shaped_like_digicerts_are_published() {
        assert!(is_random_value("6e2c97bb9afa50402a73a5fe63bd4210"));
        let long = "a".repeat(129);
        for bad in [
            "",
            "short",
            "a1b2c3d4\nupdate delete example.test TXT",
            "a1b2c3d4 e5",
            "\"a1b2c3d4\"",
            long.as_str(),
        ] {
            assert!(!is_random_value(bad), "{bad:?}");
        }
    }
}
