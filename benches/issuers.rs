//! Issuer benchmarks against real servers: `cargo bench --bench issuers [-- N]`.
//!
//! Starts BIND (`named`, a test zone taking TSIG-signed updates) and Pebble (Debian's package)
//! on loopback, as the integration tests do (`tests/it/servers.rs`, shared here), then:
//!
//! 1. N (default 20) renewals of DV CertCentral orders validated with `dns-txt-token` through
//!    RFC 2136 into BIND, against the in-process sandbox, which checks the record in BIND:
//!    CertCentral requests per renewal (goal: ≤ 6) and time from submit to installed (goal:
//!    ≤ 2 s on loopback, dominated by the sandbox's check).
//! 2. N ACME renewals against Pebble with dns-01 through RFC 2136: requests to the CA per
//!    renewal (one account, created by the first) and time from order to installed.
//!
//! One certificate at a time, so the times are per renewal, not shares of a batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certkeeper::config::Config;
use certkeeper::renewal::{DriveOptions, Engine, Outcome, Step};
use certkeeper::sandbox::{OrderSpec, Reach, Sandbox, SandboxConfig};

#[allow(unreachable_pub)]
#[path = "../tests/it/servers.rs"]
mod servers;

/// What `servers.rs` needs from the tests' `common` module.
mod common {
    pub(crate) fn path_str(p: &std::path::Path) -> &str {
        p.to_str().expect("utf-8 path")
    }
}

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    // BENCH_LOG=info shows the engine's log (to see where the time goes).
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let bind = servers::Bind::start(dir.path().join("bind"));
    rt.block_on(async {
        let (ms, per, statuses) = dcv(&bind, dir.path(), n).await?;
        println!("## {n} CertCentral renewals with DCV (dns-txt-token by RFC 2136 into BIND), DV orders, in-process sandbox\n");
        println!("| requests/renewal | p50 submit→installed | max | HTTP statuses |\n| ---: | ---: | ---: | --- |");
        println!(
            "| {per:.2} | {:.0} ms | {:.0} ms | {statuses} |",
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
        let (ms, per, statuses) = acme(&bind, dir.path(), n).await?;
        println!("\n## {n} ACME renewals against Pebble (dns-01 by RFC 2136 into BIND), one account\n");
        println!("| requests/renewal | p50 order→installed | max | HTTP statuses |\n| ---: | ---: | ---: | --- |");
        println!(
            "| {per:.2} | {:.0} ms | {:.0} ms | {statuses} |",
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
        Ok::<(), Error>(())
    })?;
    Ok(())
}

/// `[[dns_update]]` for the BIND instance.
fn dns_update(bind: &servers::Bind) -> String {
    format!(
        "[[dns_update]]\nname = \"bind\"\nserver = \"{}\"\ntsig_key_file = \"{}\"\nzone = \"{}\"\n",
        bind.addr(),
        bind.key_file.display(),
        servers::ZONE
    )
}

/// Renews every certificate of `config` one at a time; returns the milliseconds from the step
/// `from` to `installed`, sorted.
async fn renew_all(config: &Config, from: &'static str) -> Result<Vec<f64>, Error> {
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let took: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut engine = Engine::from_config(config)?;
    let (s, t) = (started.clone(), took.clone());
    engine.observer = Some(Arc::new(move |name, step: &Step| {
        let mut s = s.lock().expect("lock");
        if step.name() == from {
            s.entry(name.to_string()).or_insert_with(Instant::now);
        } else if step.name() == "installed"
            && let Some(at) = s.remove(name.as_str())
        {
            t.lock()
                .expect("lock")
                .push(at.elapsed().as_secs_f64() * 1000.0);
        }
    }));
    for cert in &config.certificates {
        let outcome = certkeeper::cli::renew_one(
            &engine,
            cert,
            DriveOptions::default(),
            Duration::from_secs(120),
        )
        .await?;
        if !matches!(outcome, Outcome::Renewed { .. }) {
            return Err(format!("{}: {outcome:?}", cert.name).into());
        }
    }
    let mut ms = took.lock().expect("lock").clone();
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

fn statuses(counts: impl IntoIterator<Item = (u16, u64)>) -> String {
    let mut by = std::collections::BTreeMap::new();
    for (s, n) in counts {
        *by.entry(s).or_insert(0) += n;
    }
    by.iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn dcv(
    bind: &servers::Bind,
    dir: &std::path::Path,
    n: usize,
) -> Result<(Vec<f64>, f64, String), Error> {
    let orders = (0..n)
        .map(|i| {
            let mut o: OrderSpec = format!("{}:d{i}.{}", 10_000 + i, servers::ZONE).parse()?;
            o.dv = true;
            Ok(o)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let sandbox = Sandbox::start(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            orders,
            reach: Reach {
                resolve: Vec::new(),
                dns_server: Some(bind.addr().parse()?),
            },
            ..SandboxConfig::default()
        },
    )
    .await?;
    // The sandbox accepts any key; the file must be private like a real one.
    let key = dir.join("api-key");
    std::fs::write(&key, "bench\n")?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let mut text = format!(
        "[certcentral]\nurl = \"{}\"\napi_key_file = \"api-key\"\n[daemon]\nstate_dir = \"dcv-state\"\njitter = \"0s\"\npoll_interval = \"1s\"\n{}",
        sandbox.url(),
        dns_update(bind)
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[certificate]]\nname = \"d{i}\"\norder_id = {}\nskip_approval = true\ncert_file = \"dcv/d{i}/cert.pem\"\nkey_file = \"dcv/d{i}/key.pem\"\ndcv_method = \"dns-txt-token\"\ndns_update = \"bind\"\ndns_resolver = \"{}\"\n",
            10_000 + i,
            bind.addr()
        ));
    }
    let config = Config::parse(&dir.join("dcv.toml"), &text)?;
    let ms = renew_all(&config, "submitting").await?;
    let reqs = sandbox.requests();
    let per = reqs.len() as f64 / n as f64;
    Ok((ms, per, statuses(reqs.iter().map(|r| (r.status, 1)))))
}

async fn acme(
    bind: &servers::Bind,
    dir: &std::path::Path,
    n: usize,
) -> Result<(Vec<f64>, f64, String), Error> {
    // http-01 is not used: Pebble needs a port for it, any free one.
    let pebble = servers::Pebble::start(
        dir.join("pebble"),
        servers::PebbleOptions {
            kind: servers::PebbleKind::Bookworm,
            http_port: servers::free_port(),
            dns: bind.addr(),
            eab_required: false,
        },
    );
    let mut text = format!(
        "[daemon]\nstate_dir = \"acme-state\"\njitter = \"0s\"\n[[acme]]\nname = \"pebble\"\ndirectory = \"{}\"\nca_file = \"{}\"\n{}",
        pebble.directory(),
        pebble.ca_file.display(),
        dns_update(bind)
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[certificate]]\nname = \"a{i}\"\nacme = \"pebble\"\ncommon_name = \"a{i}.{}\"\ncert_file = \"acme/a{i}/cert.pem\"\nkey_file = \"acme/a{i}/key.pem\"\nchallenge = \"dns-01\"\ndns_update = \"bind\"\ndns_resolver = \"{}\"\n",
            servers::ZONE,
            bind.addr()
        ));
    }
    let config = Config::parse(&dir.join("acme.toml"), &text)?;
    let before: u64 = certkeeper::acme::request_counts()
        .iter()
        .map(|(_, c)| c)
        .sum();
    let ms = renew_all(&config, "key_ready").await?;
    let counts = certkeeper::acme::request_counts();
    let total: u64 = counts.iter().map(|(_, c)| c).sum::<u64>() - before;
    Ok((
        ms,
        total as f64 / n as f64,
        statuses(counts.into_iter().map(|((_, _, s), c)| (s, c))),
    ))
}
