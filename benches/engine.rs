//! Engine benchmarks: `cargo bench --bench engine [-- RENEWALS LIMITED KEYGEN_SAMPLES]`.
//!
//! 1. Key generation per key type (rcgen + aws-lc-rs), median and spread.
//! 2. RENEWALS (default 1000) ECDSA P-256 renewals against the in-process sandbox, 4 at a
//!    time, without the client-side rate limiter: trigger-to-installed p50/p99, total time,
//!    CertCentral requests per renewal.
//! 3. LIMITED (default 400) renewals against the sandbox enforcing CertCentral's real limits,
//!    with certkeeper's limiter: the share of the limits' bound achieved, and 429s seen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use certkeeper::certcentral::{Client, ClientOptions};
use certkeeper::config::Config;
use certkeeper::model::{ApiKey, KeyType, SignatureHash};
use certkeeper::renewal::{DriveOptions, Engine, Outcome};
use certkeeper::sandbox::{OrderSpec, Sandbox, SandboxConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let renewals = args.first().copied().unwrap_or(1000);
    let limited = args.get(1).copied().unwrap_or(400);
    let keygen = args.get(2).copied().unwrap_or(15);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    println!(
        "## key generation ({keygen} samples, RSA-4096: {} samples)\n",
        keygen.div_ceil(3)
    );
    println!("| key type | median ms | min ms | max ms |\n| --- | ---: | ---: | ---: |");
    for kt in KeyType::ALL {
        let n = if kt == KeyType::Rsa4096 {
            keygen.div_ceil(3)
        } else {
            keygen
        };
        let mut ms: Vec<f64> = (0..n.max(1))
            .map(|_| {
                let t = Instant::now();
                certkeeper::crypto::generate_key(kt, SignatureHash::Sha256).expect("keygen");
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "| {kt} | {:.3} | {:.3} | {:.3} |",
            ms[ms.len() / 2],
            ms[0],
            ms[ms.len() - 1]
        );
    }

    rt.block_on(async {
        let (took, lat, per, statuses) = run(renewals, false).await?;
        println!("\n## {renewals} ECDSA P-256 renewals, in-process sandbox, concurrency 4, no rate limiter\n");
        println!("| total | renewals/s | p50 trigger→installed | p99 | requests/renewal | HTTP statuses |\n| ---: | ---: | ---: | ---: | ---: | --- |");
        println!(
            "| {:.2} s | {:.0} | {:.1} ms | {:.1} ms | {per:.2} | {statuses} |",
            took.as_secs_f64(),
            renewals as f64 / took.as_secs_f64(),
            pct(&lat, 0.50),
            pct(&lat, 0.99)
        );
        let (took, _, per, statuses) = run(limited, true).await?;
        let requests = (limited as f64 * per).round();
        // CertCentral allows 100 per 5 s and 1000 per 3 min (rolling): the fastest legal pace.
        let bound = if requests <= 1000.0 { ((requests - 100.0).max(0.0) / 100.0).ceil() * 5.0 } else { ((requests - 1000.0) / 1000.0).ceil() * 180.0 + 45.0 };
        println!("\n## {limited} renewals under CertCentral's real limits (sandbox enforcing 100/5 s and 1000/3 min)\n");
        println!("| requests | total | fastest legal | share of the bound | HTTP statuses |\n| ---: | ---: | ---: | ---: | --- |");
        let share = if bound > 0.0 { format!("{:.0}%", 100.0 * bound / took.as_secs_f64()) } else { "n/a (within the first burst)".into() };
        println!("| {requests} | {:.1} s | {bound:.0} s | {share} | {statuses} |", took.as_secs_f64());
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Renews `n` certificates (one order each) and returns total time, sorted latencies (ms),
/// requests per renewal and the HTTP status counts.
async fn run(
    n: usize,
    limits: bool,
) -> Result<(Duration, Vec<f64>, f64, String), Box<dyn std::error::Error>> {
    let orders: Vec<OrderSpec> = (0..n)
        .map(|i| format!("{}:h{i}.bench.test", 10_000 + i).parse())
        .collect::<Result<_, _>>()?;
    let sandbox = Sandbox::start(
        "127.0.0.1:0".parse()?,
        SandboxConfig {
            orders,
            rate_limits: limits,
            ..SandboxConfig::default()
        },
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let mut text = format!(
        "[certcentral]\nurl = \"{}\"\n[daemon]\nstate_dir = \"state\"\njitter = \"0s\"\n",
        sandbox.url()
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[certificate]]\nname = \"h{i}\"\norder_id = {}\nskip_approval = true\ncert_file = \"c/h{i}/cert.pem\"\nkey_file = \"c/h{i}/key.pem\"\n",
            10_000 + i
        ));
    }
    let config = Config::parse(&dir.path().join("certkeeper.toml"), &text)?;
    let mut opts = ClientOptions::new(
        config.certcentral.url.clone(),
        ApiKey::new(format!("bench-{limits}")),
    );
    opts.rate_limit = limits;
    let engine = Arc::new(Engine::new(Client::new(opts)?, config.daemon.clone()));
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for cert in config.certificates.clone() {
        let (engine, permits) = (engine.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let t = Instant::now();
            let outcome = engine
                .drive(&cert, DriveOptions::default())
                .await
                .expect("drive");
            assert!(matches!(outcome, Outcome::Renewed { .. }), "{outcome:?}");
            t.elapsed().as_secs_f64() * 1000.0
        });
    }
    let mut lat = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        lat.push(r?);
    }
    let took = started.elapsed();
    lat.sort_by(f64::total_cmp);
    let reqs = sandbox.requests();
    let mut statuses = std::collections::BTreeMap::new();
    for r in &reqs {
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    let statuses = statuses
        .iter()
        .map(|(s, c)| format!("{s}: {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((took, lat, reqs.len() as f64 / n as f64, statuses))
}
