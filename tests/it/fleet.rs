//! A fleet: 300 certificates sharing one CertCentral order through `duplicate`, all due at the
//! same moment, against the sandbox enforcing CertCentral's real rate limits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use certkeeper::daemon::{self, Event};
use certkeeper::sandbox::SandboxConfig;

use crate::common::TestEnv;

const FLEET: usize = 300;

/// Every certificate renews; no request is refused for rate; with `skip_approval` a renewal
/// costs at most 3 requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_duplicates_at_once_under_the_real_limits() {
    let env = TestEnv::with(SandboxConfig {
        rate_limits: true,
        ..SandboxConfig::default()
    })
    .await;
    let certs: String = (0..FLEET)
        .map(|i| env.cert(&format!("host{i:03}"), "method = \"duplicate\""))
        .collect::<Vec<_>>()
        .join("\n");
    let path = env.write_config("concurrency = 8", &certs);

    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(async move { daemon::run(&path, rx).await });
    let done = || {
        (0..FLEET)
            .filter(|i| env.path(&format!("certs/host{i:03}/cert.pem")).exists())
            .count()
    };
    while done() < FLEET {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "only {} of {FLEET} renewed",
            done()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    tx.send(Event::Stop).await.expect("stop");
    daemon.await.expect("join").expect("daemon ran");

    let requests = env.sandbox.requests();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for r in &requests {
        *by_status.entry(r.status).or_default() += 1;
    }
    let per_renewal = requests.len() as f64 / FLEET as f64;
    println!(
        "fleet: {FLEET} duplicate renewals in {:.1} s, {} requests ({per_renewal:.2} per renewal), statuses {by_status:?}",
        elapsed.as_secs_f64(),
        requests.len()
    );
    assert_eq!(by_status.get(&429), None, "no request was refused for rate");
    assert_eq!(env.sandbox.count("POST", "/duplicate"), FLEET);
    assert!(per_renewal <= 3.0, "{per_renewal} requests per renewal");
    for i in [0, FLEET / 2, FLEET - 1] {
        env.assert_installed_set_valid(&format!("host{i:03}"));
    }
}
