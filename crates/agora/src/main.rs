//! The `agora` binary: command line, configuration, logging, signals. Everything else lives in the
//! library crates (`agora-server` → `agora-core` → `agora-upstream`/`agora-storage` → `agora-gomod`).

mod config;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use agora_core::{Policy, Proxy, ProxyOptions, SumdbProxy};
use agora_server::AppState;
use agora_storage::Storage;
use agora_upstream::{ClientOptions, UpstreamClient};
use config::{Config, LogFormat, Overrides};

#[derive(Parser)]
#[command(name = "agora", version, about = "A self-hosted Go module proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve(ConfigArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (all layers merged, secrets redacted).
    Show(ConfigArgs),
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:3000.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory (created if missing).
    #[arg(long = "data", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Upstream chain in GOPROXY syntax, e.g. "https://goproxy.cn,direct".
    #[arg(long, value_name = "GOPROXY")]
    upstream: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Log filter, e.g. info or agora=debug.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let overrides = Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            upstream: self.upstream.clone(),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
        };
        config::load(self.config.as_deref(), &env, &overrides)
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.load().and_then(serve),
        Command::Config {
            command: ConfigCommand::Show(args),
        } => args.load().and_then(|c| {
            print!("{}", c.to_redacted_toml()?);
            Ok(())
        }),
    };
    if let Err(err) = result {
        eprintln!("agora: error: {err:#}");
        std::process::exit(1);
    }
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(config: Config) -> Result<()> {
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> Result<()> {
    let storage = Storage::local(&config.data_dir)?;
    let chain = agora_upstream::parse_goproxy(&config.upstream.proxy)?;
    let mut extra_ca_pem = Vec::new();
    if !config.upstream.ca_file.is_empty() {
        extra_ca_pem
            .push(std::fs::read(&config.upstream.ca_file).with_context(|| {
                format!("reading upstream.ca_file {}", config.upstream.ca_file)
            })?);
    }
    let client = UpstreamClient::new(ClientOptions {
        connect_timeout: config.upstream.connect_timeout,
        timeout: config.upstream.timeout,
        idle_timeout: config.upstream.idle_timeout,
        zip_timeout: config.upstream.zip_timeout,
        retries: config.upstream.retries,
        extra_ca_pem,
        ..ClientOptions::default()
    })?;
    let policy = Policy::new(
        &config.routing.direct_patterns(),
        &config.routing.nosum_patterns(),
    );
    let proxy = Proxy::without_direct(
        storage.clone(),
        policy.clone(),
        &chain,
        client.clone(),
        ProxyOptions {
            list_fresh: config.cache.list_fresh,
            list_stale: config.cache.list_stale,
        },
    );
    let sumdb = SumdbProxy::new(
        config.sumdb_endpoint().into_iter().collect(),
        client,
        storage.clone(),
        policy,
    );
    let app = agora_server::router(AppState {
        proxy,
        sumdb: Arc::new(sumdb),
    });

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        listen = %addr,
        data_dir = %storage.backend(),
        upstream = %agora_upstream::client::redact(&config.upstream.proxy),
        "agora started"
    );
    // A stable, machine-readable readiness line (tests and scripts wait for it).
    println!("agora: listening on http://{addr}");
    std::io::stdout().flush().ok();

    agora_server::serve(listener, app, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("agora stopped");
    Ok(())
}

/// Completes on ctrl-c or SIGTERM; the server then stops accepting and drains in-flight requests.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; draining requests");
}
