//! The `agora` binary: command line, configuration, logging, signals. Everything else lives in the
//! library crates (`agora-server` → `agora-core` → `agora-upstream`/`agora-storage` → `agora-gomod`).

mod app;
mod athens;
mod auth_cmd;
mod config;
mod doctor;
mod healthcheck;
mod migrate;
mod ops;
mod progress;
mod sumdb_cmd;
mod telemetry;
mod token_cmd;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};

use agora_server::AppState;
use agora_storage::Storage;
use config::{Config, Overrides};

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
    /// Load an existing cache into agora's storage: a Go module cache (or its cache/download
    /// tree, or any GOPROXY tree) or an Athens disk storage. Every zip is verified.
    Import {
        /// The directory to read.
        dir: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write every stored version (.info, .mod, .zip, and an @v/list per module) to DIR as a
    /// GOPROXY tree, usable as GOPROXY=file:///DIR.
    Export {
        /// The directory to write (created if missing).
        dir: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List cached modules (matching PATTERN, GOPRIVATE-style), or one module's versions.
    Ls {
        /// A module path or pattern (`github.com/org`, `*.corp.example`).
        pattern: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Totals of the cache: modules, versions, artifacts and bytes by kind and origin.
    Stats {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Maintain the metadata index.
    Index {
        #[command(subcommand)]
        command: ops::IndexCommand,
    },
    /// Quarantine MODULE@VERSION: answered 410 Gone with the reason, left out of lists and
    /// @latest, its artifacts kept aside; --lift restores it. Audited.
    Quarantine {
        /// MODULE@VERSION.
        target: String,
        /// Why (shown to clients).
        #[arg(long, required_unless_present = "lift")]
        reason: Option<String>,
        /// Lift the quarantine instead.
        #[arg(long, conflicts_with = "reason")]
        lift: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete MODULE[@VERSION]'s artifacts from storage (a secret leaked in a private module).
    /// The next request fetches whatever the source has then. Audited.
    Rm {
        /// MODULE or MODULE@VERSION.
        target: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Show what retention ([retention]) would delete, and the bytes it would free; --apply
    /// deletes it.
    Gc {
        #[arg(long)]
        apply: bool,
        /// One JSON object per line for each artifact.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// agora's own checksum database: create its key, verify or export the log.
    Sumdb {
        #[command(subcommand)]
        command: sumdb_cmd::SumdbCommand,
    },
    /// Issue, list and revoke client tokens (a running server picks changes up by itself).
    Token {
        #[command(subcommand)]
        command: token_cmd::TokenCommand,
        /// Tokens file (default: auth.tokens_file from the configuration).
        #[arg(long, value_name = "FILE", global = true)]
        file: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print an agora token for the go command: use as GOAUTH='agora auth ...' (Go 1.24+).
    ///
    /// Prints agora's URL and an `Authorization: Bearer` header in the format `go help goauth`
    /// describes, with the token from --token-file, AGORA_TOKEN_FILE or AGORA_TOKEN. When the go
    /// command calls it again with a refused URL (and agora's answer on stdin), it prints the
    /// same credentials for agora's URLs and nothing for any other host.
    #[command(after_long_help = auth_cmd::HELP)]
    Auth(auth_cmd::AuthArgs),
    /// Exit 0 when the agora on this machine answers /readyz with 200 (container and service
    /// health checks; plain HTTP only).
    Healthcheck {
        /// The URL to ask (default: /readyz, under server.path_prefix, on the configured listen
        /// address, via loopback when it listens on every address). A Unix socket is written
        /// http://unix:/run/agora/agora.sock:/readyz.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print a completion script for SHELL, e.g. `agora completions bash >
    /// /usr/share/bash-completion/completions/agora`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command (agora.1, agora-serve.1, ...)
    /// into --dir.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (all layers merged, secrets redacted).
    Show(ConfigArgs),
    /// Translate an Athens configuration (its TOML file and the ATHENS_* and other variables
    /// that override it) into an agora.toml. Every Athens setting that cannot be carried over is
    /// named on stderr, one line each, with the reason. Secrets are never copied: they are
    /// referenced by environment variable, or (basic auth) kept as a token hash.
    ImportAthens(ImportAthensArgs),
}

#[derive(Args)]
struct ImportAthensArgs {
    /// The Athens configuration file (config.toml / athens.toml).
    path: PathBuf,
    /// Write agora.toml here instead of to stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace the --output file if it exists.
    #[arg(long, requires = "output")]
    force: bool,
    /// agora's data directory in the translation (Athens' disk storage is imported into it with
    /// `agora import`, not shared).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/agora")]
    data_dir: PathBuf,
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:3000, or a Unix socket: unix:/run/agora/agora.sock.
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
        Command::Config {
            command: ConfigCommand::ImportAthens(args),
        } => import_athens(&args),
        Command::Import { dir, config } => config.load().and_then(|c| import(&c, &dir)),
        Command::Export { dir, config } => config.load().and_then(|c| export(&c, &dir)),
        Command::Ls {
            pattern,
            json,
            config,
        } => config
            .load()
            .and_then(|c| runtime()?.block_on(ops::ls(&c, pattern.as_deref(), json))),
        Command::Stats { json, config } => config
            .load()
            .and_then(|c| runtime()?.block_on(ops::stats(&c, json))),
        Command::Index {
            command: ops::IndexCommand::Rebuild { hash, config },
        } => config.load().and_then(|c| {
            let storage = open_storage(&c)?;
            runtime()?.block_on(ops::rebuild(&c, &storage, hash))
        }),
        Command::Quarantine {
            target,
            reason,
            lift,
            config,
        } => config
            .load()
            .and_then(|c| quarantine(&c, &target, reason.as_deref(), lift)),
        Command::Rm { target, config } => config.load().and_then(|c| remove(&c, &target)),
        Command::Gc {
            apply,
            json,
            config,
        } => config.load().and_then(|c| {
            let app = app::build(&c, open_storage(&c)?)?;
            runtime()?.block_on(async {
                app.proxy.attach_index(ops::open_index(&c).await?);
                ops::gc(&c, &app.proxy, apply, json).await
            })
        }),
        Command::Sumdb { command } => match command {
            sumdb_cmd::SumdbCommand::Init { name, key_file } => sumdb_cmd::init(&name, &key_file),
            sumdb_cmd::SumdbCommand::Verify { config } => config.load().and_then(|c| {
                let app = app::build(&c, open_storage(&c)?)?;
                let ok = runtime()?.block_on(sumdb_cmd::verify(&c, &app))?;
                if !ok {
                    std::process::exit(1);
                }
                Ok(())
            }),
            sumdb_cmd::SumdbCommand::Export { dir, config } => config.load().and_then(|c| {
                let app = app::build(&c, open_storage(&c)?)?;
                runtime()?.block_on(sumdb_cmd::export(&app, &dir))
            }),
        },
        Command::Token {
            command,
            file,
            config,
        } => tokens_file(file, &config)
            .and_then(|f| token_cmd::run(&command, &f, &mut std::io::stdout().lock())),
        Command::Auth(args) => auth_cmd::run_main(&args),
        Command::Healthcheck { url, config } => healthcheck::run(url.as_deref(), &config),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "agora", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man(dir.as_deref()),
    };
    if let Err(err) = result {
        eprintln!("agora: error: {err:#}");
        std::process::exit(1);
    }
}

fn man(dir: Option<&std::path::Path>) -> Result<()> {
    match dir {
        None => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout().lock())
            .context("writing the manual page"),
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))
        }
    }
}

fn import_athens(args: &ImportAthensArgs) -> Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let opts = athens::Options {
        data_dir: args.data_dir.clone(),
    };
    let t = athens::translate(&args.path, &env, &opts)?;
    athens::check_loads(&t.toml)
        .context("the translated configuration does not load (a bug in import-athens)")?;
    for note in &t.notes {
        eprintln!("{note}");
    }
    match &args.output {
        None => print!("{}", t.toml),
        Some(path) => write_new_file(path, t.toml.as_bytes(), args.force)?,
    }
    Ok(())
}

/// Writes `bytes` to `path`; an existing file is an error unless `force`, and then it is
/// replaced atomically (a temporary file beside it, renamed over it).
fn write_new_file(path: &std::path::Path, bytes: &[u8], force: bool) -> Result<()> {
    if !force {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    anyhow::anyhow!("{} exists; pass --force to replace it", path.display())
                }
                _ => anyhow::Error::from(e).context(format!("creating {}", path.display())),
            })?;
        return file
            .write_all(bytes)
            .with_context(|| format!("writing {}", path.display()));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".agora-tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// The configured artifact store.
fn open_storage(config: &Config) -> Result<Storage> {
    Storage::open(&config.storage, &config.data_dir).context("opening storage")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `agora quarantine MODULE@VERSION --reason TEXT | --lift`.
fn quarantine(config: &Config, target: &str, reason: Option<&str>, lift: bool) -> Result<()> {
    let (module, version) = ops::parse_target(target, true)?;
    let version = version.expect("parse_target requires it");
    let app = app::build(config, open_storage(config)?)?;
    let audit = app::access(config)?.guard.audit().clone();
    runtime()?.block_on(async {
        app.proxy.attach_index(ops::open_index(config).await?);
        if lift {
            let result = app.proxy.lift(&module, &version).await;
            let said = match &result {
                Ok(Some(_)) => "ok".to_owned(),
                Ok(None) => "was not quarantined".to_owned(),
                Err(e) => format!("error: {e}"),
            };
            ops::audit_admin(&audit, "lift", &module, Some(&version), None, &said);
            match result? {
                Some(_) => println!("{module}@{version}: quarantine lifted"),
                None => println!("{module}@{version}: was not quarantined"),
            }
            return Ok(());
        }
        let reason = reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .context("--reason: say why")?;
        let result = app
            .proxy
            .quarantine(&module, &version, reason, &ops::cli_actor())
            .await;
        let said = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        ops::audit_admin(
            &audit,
            "quarantine",
            &module,
            Some(&version),
            Some(reason),
            &said,
        );
        result?;
        println!(
            "{module}@{version}: quarantined ({reason}); running servers refuse it within {}",
            humantime::format_duration(config.index.sync_interval)
        );
        Ok(())
    })
}

/// `agora rm MODULE[@VERSION]`.
fn remove(config: &Config, target: &str) -> Result<()> {
    let (module, version) = ops::parse_target(target, false)?;
    let app = app::build(config, open_storage(config)?)?;
    let audit = app::access(config)?.guard.audit().clone();
    runtime()?.block_on(async {
        app.proxy.attach_index(ops::open_index(config).await?);
        let result = app.proxy.remove(&module, version.as_deref()).await;
        let said = match &result {
            Ok(keys) => format!("{} objects deleted", keys.len()),
            Err(e) => format!("error: {e}"),
        };
        ops::audit_admin(&audit, "remove", &module, version.as_deref(), None, &said);
        for key in result? {
            println!("deleted {}", key.path());
        }
        Ok(())
    })
}

fn import(config: &Config, dir: &std::path::Path) -> Result<()> {
    let app = app::build(config, open_storage(config)?)?;
    let verify = migrate::Verify {
        policy: &app.policy,
        checksums: app.checksums.as_deref(),
    };
    let report = runtime()?.block_on(migrate::import(
        &app.storage,
        dir,
        &verify,
        &mut std::io::stdout().lock(),
    ))?;
    if !report.rejected.is_empty() {
        anyhow::bail!("{} versions were rejected", report.rejected.len());
    }
    Ok(())
}

fn export(config: &Config, dir: &std::path::Path) -> Result<()> {
    let storage = open_storage(config)?;
    runtime()?.block_on(migrate::export(
        &storage,
        dir,
        &mut std::io::stdout().lock(),
    ))
}

/// The tokens file `agora token` works on: `--file`, else the configured one.
fn tokens_file(flag: Option<PathBuf>, config: &ConfigArgs) -> Result<PathBuf> {
    if let Some(f) = flag {
        return Ok(f);
    }
    config
        .load()?
        .auth
        .tokens_file
        .context("no tokens file: pass --file FILE or set auth.tokens_file in the configuration")
}

fn serve(config: Config) -> Result<()> {
    let telemetry = telemetry::init(&config)?;
    let storage = open_storage(&config)?;
    // Built before the runtime starts: wiring may set process environment for git.
    let app = app::build(&config, storage)?;
    let doctor_app = Arc::new(doctor::doctor_app(&config)?);
    let access = app::access(&config)?;
    // `validate` made sure that a TLS listener has both files.
    let tls = if let (Some(_), Some(cert_file), Some(key_file)) = (
        &config.tls.listen,
        &config.tls.cert_file,
        &config.tls.key_file,
    ) {
        let files = agora_server::TlsFiles {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        };
        Some(Arc::new(
            agora_server::ReloadingTls::load(files).context("loading the TLS certificate")?,
        ))
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let traced = telemetry.exporting();
    let result = runtime.block_on(run(config, app, doctor_app, access, tls, traced));
    // Outside the runtime: the exporter sends its last batch from its own thread.
    telemetry.shutdown();
    result
}

async fn run(
    config: Config,
    app: app::App,
    doctor_app: Arc<app::App>,
    access: app::Access,
    tls: Option<Arc<agora_server::ReloadingTls>>,
    traced: bool,
) -> Result<()> {
    let storage = app.storage.clone();
    check_remote_storage(&storage).await?;
    let index = ops::open_index(&config).await?;
    app.proxy.attach_index(index.clone());
    app.proxy
        .sync_index()
        .await
        .context("reading quarantines from the metadata index")?;
    ops::spawn_background(&config, app.proxy.clone());
    let proxy = app.proxy.clone();
    let tokens = access.tokens.clone();
    let audit = access.guard.audit().clone();
    let ui = agora_server::ui::UiSettings::new(
        config.routing.direct_patterns(),
        app.checksums.as_ref().map(|_| config.sumdb.name.clone()),
        !tokens.is_empty() || access.guard.restricts(),
        config.server.path_prefix.clone().unwrap_or_default(),
    );
    let ui = ui.with_doctor(agora_server::ui::Doctor(Arc::new(move |target: String| {
        let app = doctor_app.clone();
        Box::pin(async move {
            let v = doctor::diagnose(&app, &target).await;
            (v.ok, v.report)
        })
    })));
    let ui = match app.proxy.checksum_db() {
        Some(db) => ui.with_own_sumdb(db.verifier_key().to_owned()),
        None => ui,
    };
    let ui = if config.retention.is_set() {
        ui.with_retention(agora_server::ui::RetentionUi {
            policy: config.retention.policy(&config.routing.direct_patterns()),
            keep_recent: config.retention.keep_recent,
            interval: config.retention.interval,
        })
    } else {
        ui
    };
    let mut router = agora_server::router(AppState {
        proxy: app.proxy,
        sumdb: Arc::new(app.sumdb),
        guard: access.guard,
        ui: Arc::new(ui),
    });
    if let Some(prefix) = &config.server.path_prefix {
        // `validate` checked it.
        let prefix = agora_server::PathPrefix::new(prefix)?;
        router = agora_server::with_path_prefix(router, prefix);
    }
    if traced {
        router = agora_server::trace::with_request_spans(router);
    }
    // Without a tokens file a reload is a no-op; watching costs nothing then.
    tokens.clone().spawn_watch(config.auth.reload_interval);
    if let Some(tls) = &tls {
        tls.clone().spawn_watch(config.tls.reload_interval);
    }

    let plain = bind(config.listen.as_deref(), "http").await?;
    let secure = bind(config.tls.listen.as_deref(), "https").await?;
    tracing::info!(
        listen = %plain.as_ref().map(|l| l.url.as_str()).unwrap_or_default(),
        tls_listen = %secure.as_ref().map(|l| l.url.as_str()).unwrap_or_default(),
        path_prefix = %config.server.path_prefix.as_deref().unwrap_or_default(),
        data_dir = %storage.backend(),
        upstream = %agora_secret::redact(&config.upstream.proxy),
        tokens = tokens.len(),
        "agora started"
    );
    // Stable, machine-readable readiness lines (tests and scripts wait for the first):
    // `http://ADDR`, `https://ADDR` or `unix:/PATH`.
    for bound in [&plain, &secure].into_iter().flatten() {
        println!("agora: listening on {}", bound.url);
    }
    std::io::stdout().flush().ok();
    // Kept until the end of this function: dropping it removes the socket file.
    let (plain, _socket_file) = match plain {
        Some(b) => (Some(b.listener), b.socket_file),
        None => (None, None),
    };
    // `validate` refuses a Unix socket for tls.listen: there is no socket file to keep.
    let secure = secure.map(|b| b.listener);

    let opts = agora_server::ServeOptions {
        header_timeout: config.server.header_timeout,
        send_timeout: config.server.send_timeout,
        shutdown_timeout: config.server.shutdown_timeout,
        keep_alive: config.server.keep_alive,
    };
    let stop = agora_server::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    });
    tokio::spawn(reload_on_hangup(tls.clone(), tokens, audit));
    let http = async {
        match plain {
            Some(listener) => {
                agora_server::serve_with(
                    listener,
                    router.clone(),
                    stop.clone().cancelled_owned(),
                    opts.clone(),
                )
                .await
            }
            None => Ok(()),
        }
    };
    let https = async {
        match (secure, tls) {
            (Some(listener), Some(tls)) => {
                agora_server::serve_tls(
                    listener,
                    router.clone(),
                    stop.clone().cancelled_owned(),
                    opts.clone(),
                    tls,
                )
                .await
            }
            _ => Ok(()),
        }
    };
    tokio::try_join!(http, https).context("server failed")?;
    if let Err(err) = proxy.sync_index().await {
        tracing::warn!(error = %err, "writing the last hits to the index failed");
    }
    index.close().await.ok();
    tracing::info!("agora stopped");
    Ok(())
}

/// A remote store must refuse overwrites, or write-once would silently not hold: refuse to start
/// on one that does not. An unreachable store is only logged (`/readyz` reports it until it
/// answers). Leftover staging objects of crashed uploads are cleaned in the background.
async fn check_remote_storage(storage: &Storage) -> Result<()> {
    if !matches!(storage.backend(), agora_storage::Backend::Remote(_)) {
        return Ok(());
    }
    match storage.verify_write_once().await {
        Ok(()) => {}
        Err(err @ agora_storage::StorageError::Config { .. }) => return Err(err.into()),
        Err(err) => {
            tracing::error!(error = %err, "storage does not answer yet; serving anyway (see /readyz)")
        }
    }
    let storage = storage.clone();
    tokio::spawn(async move {
        if let Err(err) = storage
            .sweep_staging(std::time::Duration::from_secs(24 * 3600))
            .await
        {
            tracing::warn!(error = %err, "cleaning old staging objects failed");
        }
    });
    Ok(())
}

/// A listener and how the readiness line names it.
struct Bound {
    listener: agora_server::Listener,
    /// `http://127.0.0.1:3000` (the port actually bound), `unix:/run/agora/agora.sock`.
    url: String,
    /// A Unix socket's file, removed when this is dropped.
    #[cfg(unix)]
    socket_file: Option<agora_server::UnixSocketFile>,
    #[cfg(not(unix))]
    socket_file: Option<()>,
}

/// Binds `addr` (validated at load) for `scheme` (`http` or `https`).
async fn bind(addr: Option<&str>, scheme: &str) -> Result<Option<Bound>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    match addr.parse::<agora_server::ListenAddr>()? {
        agora_server::ListenAddr::Tcp(sock) => {
            let listener = tokio::net::TcpListener::bind(sock)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            Ok(Some(Bound {
                listener: listener.into(),
                url: format!("{scheme}://{local}"),
                socket_file: None,
            }))
        }
        #[cfg(unix)]
        agora_server::ListenAddr::Unix(path) => {
            let (listener, file) = agora_server::bind_unix(&path)
                .with_context(|| format!("cannot listen on {addr}"))?;
            Ok(Some(Bound {
                listener: listener.into(),
                url: addr.to_owned(),
                socket_file: Some(file),
            }))
        }
        #[cfg(not(unix))]
        agora_server::ListenAddr::Unix(_) => {
            anyhow::bail!("cannot listen on {addr}: Unix sockets need a Unix system")
        }
    }
}

/// SIGHUP: reload the certificate and the tokens file now, and reopen the audit file (log
/// rotation). Each also reloads by itself on change; the signal is for operators who want it now.
async fn reload_on_hangup(
    tls: Option<Arc<agora_server::ReloadingTls>>,
    tokens: Arc<agora_access::TokenStore>,
    audit: Arc<agora_access::AuditLog>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading certificate and tokens, reopening the audit log");
            if let Some(tls) = &tls {
                if let Err(err) = tls.reload() {
                    tracing::warn!(error = %err, "certificate reload failed; keeping the current one");
                }
            }
            if let Err(err) = tokens.reload() {
                tracing::warn!(error = %err, "tokens reload failed; keeping the current tokens");
            }
            if let Err(err) = audit.reopen() {
                tracing::warn!(error = %err, "cannot reopen the audit log");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (tls, tokens, audit);
    }
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
