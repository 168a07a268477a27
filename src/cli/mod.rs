//! The command line: one function per command. The only module that uses `anyhow`, and the
//! only user of `daemon`, `status`, `sandbox` and `demo`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;

use crate::config::{self, Config, ConfigError};
use crate::model::{CertName, fmt_time, unix_now};
use crate::renewal::{DriveOptions, Engine, Outcome};
use crate::sandbox::{Fault, OrderSpec, Sandbox, SandboxConfig};
use crate::{daemon, demo, status};

mod check;

/// Keeps DigiCert CertCentral and ACME certificates renewed: local keys, domain validation,
/// verified atomic install, reload.
#[derive(Debug, Parser)]
#[command(name = "certkeeper", version, about)]
pub struct Cli {
    /// Configuration file [default: $CERTKEEPER_CONFIG or /etc/certkeeper/certkeeper.toml]
    #[arg(short, long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd Type=notify).
    Run,
    /// Validate the configuration and show what the daemon would do now, and why.
    Check {
        /// Also check against CertCentral, read-only: the key works, each order exists and
        /// can be renewed, its end date, duplicates allowed, auto-reissue off.
        #[arg(long)]
        online: bool,
        /// Print the systemd drop-in the shipped unit needs for this configuration (the
        /// folders certkeeper writes outside its own), and change nothing.
        #[arg(long, conflicts_with = "online")]
        drop_in: bool,
    },
    /// Show every certificate's state.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Renew the named (default: all) certificates that are due, now.
    Renew(RenewArgs),
    /// Give up a certificate's renewal in progress, configured or not: cancel its request at
    /// CertCentral, take down what was published for validation, drop the pending key.
    Abandon {
        /// The certificate's name (its folder under STATE/certs).
        name: CertName,
    },
    /// Serve a local CertCentral-compatible CA for tests and trials.
    Sandbox(Box<SandboxArgs>),
    /// Try certkeeper: a sandbox CA, a short-lived certificate, live renewals.
    Demo(DemoArgs),
    /// Write the man page and shell completions into a folder (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Output folder.
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// Certificate names (default: all).
    pub names: Vec<String>,
    /// Renew even if not due.
    #[arg(long)]
    pub force: bool,
    /// How long to wait for a pending request before leaving it to the daemon.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// An order, as ID:COMMON_NAME[,SAN…] (repeatable).
    #[arg(long = "order", value_name = "ID:NAMES")]
    pub orders: Vec<OrderSpec>,
    /// A TOML file of [[order]] tables (id, common_name, dns_names, status, order_valid_till,
    /// allow_duplicates, auto_reissue, auto_companion, multi_year_plan, dv, validated_until,
    /// dcv_method, product).
    #[arg(long, value_name = "FILE")]
    pub orders_file: Option<PathBuf>,
    /// Lifetime of issued certificates.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    pub validity: Duration,
    /// Time until a request without skip_approval is approved.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub approval_delay: Duration,
    /// Time from approval to issuance.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub issuance_delay: Duration,
    /// Require this X-DC-DEVKEY (default: accept any non-empty key).
    #[arg(long, env = "CERTKEEPER_SANDBOX_API_KEY")]
    pub api_key: Option<String>,
    /// A fault to inject, KIND[=ARG][:COUNT] (repeatable): rate-limit[=SECS], server-error[=5xx],
    /// slow=DURATION, drop-submit-response, wrong-key, missing-name, expired, truncated-pem,
    /// bad-chain, endless-body, organization-empty-array.
    #[arg(long = "fault", value_name = "FAULT")]
    pub faults: Vec<Fault>,
    /// Enforce CertCentral's rate limits per API key (100 per 5 s, 1000 per 3 min).
    #[arg(long)]
    pub rate_limits: bool,
    /// Write the sandbox root certificate (PEM) here.
    #[arg(long, value_name = "FILE")]
    pub root_out: Option<PathBuf>,
    /// Keep the CA, the orders and what was issued in this folder, across restarts.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Where a name's web server listens, for http-token validation: NAME=IP:PORT, or
    /// *=IP:PORT for every name (repeatable).
    #[arg(long = "dcv-resolve", value_name = "NAME=IP:PORT", value_parser = parse_resolve)]
    pub dcv_resolve: Vec<(String, SocketAddr)>,
    /// The DNS server asked for dns-txt-token and dns-cname-token validation (default: the
    /// system's).
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Option<SocketAddr>,
    /// How often the sandbox checks pending validations by itself (0s: only on check-dcv).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub dcv_poll: Duration,
    /// How long a DCV random value lasts.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub dcv_value_lifetime: Duration,
    /// How long a domain validation is reused on OV orders (DV orders reuse none).
    #[arg(long, default_value = "199d", value_parser = humantime::parse_duration)]
    pub dcv_reuse: Duration,
}

fn parse_resolve(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid {s:?}; write NAME=IP:PORT"))?;
    let addr = addr
        .parse()
        .map_err(|_| format!("invalid address in {s:?}; write NAME=IP:PORT"))?;
    Ok((name.trim().to_ascii_lowercase(), addr))
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo's config, state and certificates.
    #[arg(long, default_value = "certkeeper-demo")]
    pub dir: PathBuf,
    /// Lifetime of the sandbox's certificates.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub validity: Duration,
    /// Renew once and exit instead of running the daemon.
    #[arg(long)]
    pub once: bool,
}

/// The exit status for an error: 78 for configuration, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.downcast_ref::<ConfigError>().is_some()) {
        78
    } else {
        1
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logging(cli.log_format);
    // The daemon's work is small and mostly waiting: one thread runs it, and file I/O, key
    // generation and installs go to a blocking pool of two (every blocking task is bounded:
    // reads are capped, locks are polled), whose idle threads leave after a second.
    let mut builder = match cli.command {
        Command::Run => {
            let mut b = tokio::runtime::Builder::new_current_thread();
            b.max_blocking_threads(2)
                .thread_keep_alive(Duration::from_secs(1));
            b
        }
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config_path = config_path(cli.config);
    runtime.block_on(async move {
        match cli.command {
            Command::Run => daemon::run(&config_path, daemon::process_signals())
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Check { drop_in: true, .. } => check::drop_in(&config_path),
            Command::Check { online, .. } => check::run(&config_path, online).await,
            Command::Status { json } => status_cmd(&config_path, json),
            Command::Renew(args) => renew(&config_path, args).await,
            Command::Abandon { name } => abandon(&config_path, &name).await,
            Command::Sandbox(args) => sandbox(*args).await,
            Command::Demo(args) => demo::run(&args.dir, args.validity, args.once).await,
            Command::GenerateAssets { dir } => generate_assets(&dir).map(|()| ExitCode::SUCCESS),
        }
    })
}

/// The man page (`certkeeper.1`) and completions for bash, zsh and fish.
fn generate_assets(dir: &Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = Cli::command();
    let mut man = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut man)?;
    man.extend_from_slice(include_bytes!("../../packaging/certkeeper.1.tail"));
    std::fs::write(dir.join("certkeeper.1"), man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "certkeeper", dir)?;
    }
    Ok(())
}

fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("CERTKEEPER_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        EnvFilter::try_from_env("CERTKEEPER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd, text logs go to the journal natively: priorities, and the certificate
    // name and order id as fields (`journalctl -u certkeeper CERT=www`, `-p err`).
    if format == LogFormat::Text
        && std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journal) = tracing_journald::layer()
    {
        let journal = journal
            .with_field_prefix(None)
            .with_syslog_identifier("certkeeper".into());
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .try_init();
        return;
    }
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn status_cmd(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let rows = status::rows(&config, crate::renewal::KeyCheck::Embedded);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", status::table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `certkeeper abandon NAME`: exit 0 when nothing is left, 1 when something published could
/// not be taken down (a later abandon, or the daemon, tries again).
async fn abandon(path: &Path, name: &CertName) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let engine = Engine::from_config(&config)?;
    let Some(done) = engine
        .abandon(name, "a person asked (certkeeper abandon)")
        .await?
    else {
        bail!(
            "no state for a certificate named {:?} in {}",
            name.as_str(),
            config.daemon.state_dir.display()
        );
    };
    match &done.step {
        Some(step) => println!("{name}: gave up the renewal at step {step}"),
        None => println!("{name}: no renewal was in progress"),
    }
    match &done.request {
        Some(Ok(fate)) => println!("  request: {fate}"),
        Some(Err(e)) => println!("  request: {e}"),
        None => {}
    }
    for what in &done.removed {
        println!("  removed: {what}");
    }
    for what in &done.left {
        println!("  NOT removed: {what}");
    }
    if config.certificate(name.as_str()).is_some() {
        println!("  it is still configured: a new renewal starts when it is due");
    }
    Ok(if done.left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn renew(path: &Path, args: RenewArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    for name in &args.names {
        if config.certificate(name).is_none() {
            bail!("no certificate named {name:?} in {}", path.display());
        }
    }
    let engine = Engine::from_config(&config)?;
    let opts = DriveOptions {
        force: args.force,
        ignore_backoff: true,
    };
    let mut all_ok = true;
    // `concurrency` certificates at a time; results print in config order.
    let selected = config
        .certificates
        .iter()
        .filter(|c| args.names.is_empty() || args.names.iter().any(|n| n == c.name.as_str()));
    let engine = &engine;
    let mut results = futures_util::stream::iter(selected)
        .map(|cert| async move { (cert, renew_one(engine, cert, opts, args.wait).await) })
        .buffered(config.daemon.concurrency);
    while let Some((cert, outcome)) = results.next().await {
        let line = match &outcome {
            Ok(Outcome::Renewed { serial, not_after }) => format!(
                "renewed: serial {serial}, valid until {}",
                fmt_time(*not_after)
            ),
            Ok(Outcome::NotDue { next_check }) => {
                format!("not due (next check {})", fmt_time(*next_check))
            }
            Ok(Outcome::Waiting { why, .. }) => {
                all_ok = false;
                format!(
                    "still waiting for {why}; the daemon or a later `certkeeper renew` will pick it up"
                )
            }
            Ok(Outcome::Failed { message, .. }) => {
                all_ok = false;
                format!("FAILED: {message}")
            }
            Err(e) => {
                all_ok = false;
                format!("FAILED: {e}")
            }
        };
        println!("{}: {line}", cert.name);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How often `certkeeper renew` tries a certificate whose step fails before it gives up and
/// leaves the journal to resume (the daemon or a later `renew`).
pub const RENEW_ATTEMPTS: u32 = 3;
/// How long `certkeeper renew` waits in all for failed steps to be retried.
pub const RENEW_RETRY_BUDGET: Duration = Duration::from_secs(60);

/// Drives one certificate, waiting for a pending request up to `wait`. A step failing for a
/// transient reason is tried [`RENEW_ATTEMPTS`] times, each after its backoff (and the server's
/// `Retry-After`), as long as the waits fit in [`RENEW_RETRY_BUDGET`]; then, or at once for
/// any other failure, the failure is returned.
pub async fn renew_one(
    engine: &Engine,
    cert: &config::Certificate,
    opts: DriveOptions,
    wait: Duration,
) -> Result<Outcome, crate::renewal::Error> {
    let deadline = unix_now().saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX));
    let retry_deadline = unix_now().saturating_add(RENEW_RETRY_BUDGET.as_secs() as i64);
    let mut opts = opts;
    let mut failures = 0;
    loop {
        let outcome = engine.drive(cert, opts).await?;
        // A forced renewal stays forced until it has started (a failure may end it at idle).
        if !matches!(outcome, Outcome::Failed { .. }) {
            opts.force = false;
        }
        let until = match outcome {
            Outcome::Waiting { until, .. } if until <= deadline => until,
            Outcome::Failed {
                retry_at,
                class: crate::renewal::RetryClass::Transient,
                ..
            } if failures + 1 < RENEW_ATTEMPTS && retry_at <= retry_deadline => {
                failures += 1;
                retry_at
            }
            other => return Ok(other),
        };
        let secs = u64::try_from(until.saturating_sub(unix_now())).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
}

async fn sandbox(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "the sandbox listens on loopback addresses only, not {}",
            args.listen
        );
    }
    let mut orders = args.orders;
    if let Some(file) = &args.orders_file {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            order: Vec<OrderSpec>,
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let parsed: File = toml::from_str(&text).map_err(|e| match e.span() {
            Some(s) => ConfigError::at(file, &text, s.start, e.message().trim_end()),
            None => ConfigError::new(file, e.message().trim_end()),
        })?;
        orders.extend(parsed.order);
    }
    if orders.is_empty() {
        orders.push(
            "1001:example.test,www.example.test"
                .parse()
                .map_err(anyhow::Error::msg)?,
        );
    }
    let ids: Vec<String> = orders
        .iter()
        .map(|o| format!("{} ({})", o.id, o.common_name))
        .collect();
    let sb = Sandbox::start(
        args.listen,
        SandboxConfig {
            orders,
            validity: args.validity,
            approval_delay: args.approval_delay,
            issuance_delay: args.issuance_delay,
            api_key: args.api_key,
            faults: args.faults,
            rate_limits: args.rate_limits,
            state_dir: args.state,
            reach: crate::sandbox::Reach {
                resolve: args.dcv_resolve,
                dns_server: args.dns_server,
            },
            dcv_poll: args.dcv_poll,
            dcv_value_lifetime: args.dcv_value_lifetime,
            dcv_reuse: args.dcv_reuse,
        },
    )
    .await?;
    if let Some(out) = &args.root_out {
        std::fs::write(out, sb.root_pem())
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    println!("sandbox CertCentral API at {}", sb.url());
    println!("orders: {}", ids.join(", "));
    if let Some(out) = &args.root_out {
        println!("root certificate: {}", out.display());
    }
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}
