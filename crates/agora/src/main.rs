//! The `agora` binary: command line, configuration, logging, signals. Everything else lives in the
//! library crates (`agora-server` → `agora-core` → `agora-upstream`/`agora-storage` → `agora-gomod`).

mod app;
mod config;
mod doctor;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use agora_server::AppState;
use agora_storage::Storage;
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
    /// Explain, step by step, how agora would fetch MODULE[@VERSION], trying each step for real.
    Doctor {
        /// A module path, optionally with @VERSION (a version, branch, commit or "latest").
        target: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
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
        Command::Doctor { target, config } => config.load().and_then(|c| {
            let ok = doctor::run(&c, &target)?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }),
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
    let storage = Storage::local(&config.data_dir)?;
    // Built before the runtime starts: wiring may set process environment for git.
    let app = app::build(&config, storage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config, app))
}

async fn run(config: Config, app: app::App) -> Result<()> {
    let storage = app.storage.clone();
    let router = agora_server::router(AppState {
        proxy: app.proxy,
        sumdb: Arc::new(app.sumdb),
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

    let opts = agora_server::ServeOptions {
        header_timeout: config.server.header_timeout,
        send_timeout: config.server.send_timeout,
        shutdown_timeout: config.server.shutdown_timeout,
        keep_alive: config.server.keep_alive,
    };
    agora_server::serve_with(listener, router, shutdown_signal(), opts)
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
