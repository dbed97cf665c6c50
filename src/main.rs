//! `switchyard`: the polyglot query router's command line (serve, check, explain, seed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use switchyard_config::Config;
use switchyard_router::Router;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "One SQL endpoint in front of PostgreSQL, MySQL, SQLite, MongoDB and Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Configuration file.
    #[arg(long, default_value = "router.toml", env = "SWITCHYARD_CONFIG")]
    config: PathBuf,
    /// Swap every backend for an embedded SQLite file of the same name under --data-dir.
    #[arg(long)]
    embedded: bool,
    /// Where embedded SQLite files live.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP endpoint.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Listen address; overrides `server.listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate the configuration and reach every backend; reports all problems at once.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print the route of a SQL statement and the native statement each backend would run.
    Explain {
        #[command(flatten)]
        config: ConfigArgs,
        /// The SQL statement.
        sql: String,
        /// Parameters as a JSON array, e.g. '["SP", 5]'.
        #[arg(long, default_value = "[]")]
        params: String,
        /// Request context as a JSON object, e.g. '{"tenant": "eu"}'.
        #[arg(long, default_value = "{}")]
        context: String,
    },
    /// Load deterministic demo data wherever the configuration places each table.
    Seed {
        #[command(flatten)]
        config: ConfigArgs,
        /// Scale factor: 1 = 1,000 customers, 2,000 products, 5,000 orders.
        #[arg(long, default_value_t = 1)]
        scale: u32,
    },
    /// Print the JSON schema of router.toml.
    ConfigSchema,
    /// Placement plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Load a plugin, print its info, and run it against sample statements over the catalog.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
        /// Configuration whose catalog the plugin is given.
        #[arg(long, default_value = "router.toml", env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(args: &ConfigArgs) -> anyhow::Result<Config> {
    let config = switchyard_config::load_file(&args.config)?;
    if args.embedded {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
        Ok(config.into_embedded(&args.data_dir))
    } else {
        Ok(config)
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config, listen } => serve(&config, listen).await,
        Command::Check { config } => check(&config).await,
        Command::Explain {
            config,
            sql,
            params,
            context,
        } => {
            let router = Router::from_config(load(&config)?).await?;
            let params: Vec<serde_json::Value> =
                serde_json::from_str(&params).context("--params must be a JSON array")?;
            let context = serde_json::from_str(&context)
                .context("--context must be a JSON object of strings")?;
            match router.explain(&sql, &params, &context).await {
                Ok(e) => {
                    println!("planner: {}", e.planner.describe());
                    print!("{}", e.logical);
                    for f in &e.fragments {
                        println!(
                            "fragment on `{}` ({}), {}:",
                            f.backend, f.backend_kind, f.native.language
                        );
                        println!("  {}", f.native.text);
                        if !f.native.params.is_empty() {
                            let p: Vec<String> =
                                f.native.params.iter().map(|v| v.describe()).collect();
                            println!("  params: {}", p.join(", "));
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let at = e
                        .position()
                        .map(|p| format!(" at line {}, column {}", p.line, p.column))
                        .unwrap_or_default();
                    eprintln!("{}{at}: {}", e.code(), e.client_message());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Seed { config, scale } => {
            let router = Router::from_config(load(&config)?).await?;
            seed(&router, scale).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Check { file, config },
        } => plugin_check(&file, &config).await,
        Command::ConfigSchema => {
            print!("{}", switchyard_config::json_schema());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn check(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = match load(args) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("{err:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "{}: configuration is valid ({} backends, {} tables)",
        args.config.display(),
        config.backends.len(),
        config.tables.len()
    );
    let router = Router::from_config(config).await?;
    let mut failed = 0;
    for h in router.check().await {
        match h.result {
            Ok(latency) => println!(
                "  ok    {} ({}) answered in {:.1} ms",
                h.backend,
                h.kind,
                latency.as_secs_f64() * 1000.0
            ),
            Err(err) => {
                failed += 1;
                let cause = std::error::Error::source(&err)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                println!("  FAIL  {} ({}): {err}{cause}", h.backend, h.kind);
            }
        }
    }
    if failed > 0 {
        println!("{failed} backend(s) unreachable");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn seed(router: &Router, scale: u32) -> anyhow::Result<()> {
    let data = switchyard_seed::generate(scale);
    let total: usize = data.iter().map(|t| t.rows.len()).sum();
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} rows") {
        bar.set_style(style.progress_chars("=> "));
    }
    for t in data {
        bar.set_message(t.table);
        let inserted = router
            .seed_table(t.table, &t.columns, t.rows, 500, &|n| bar.inc(n as u64))
            .await
            .with_context(|| format!("seeding table {}", t.table))?;
        tracing::info!(table = t.table, inserted, "table seeded");
    }
    bar.finish_and_clear();
    Ok(())
}

async fn serve(args: &ConfigArgs, listen: Option<String>) -> anyhow::Result<ExitCode> {
    let mut config = load(args)?;
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    let addr = config.server.listen.clone();
    let router = Arc::new(Router::from_config(config).await?);
    if args.embedded && needs_demo_data(&router).await {
        tracing::info!(data_dir = %args.data_dir.display(), "seeding demo data into the embedded stores");
        seed(&router, 1).await?;
    }
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, embedded = args.embedded, "switchyard listening");
    #[cfg(unix)]
    {
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                for outcome in router.reload_plugins().await {
                    match outcome.result {
                        Ok(version) => {
                            tracing::info!(module = %outcome.module, version = %version, "plugin reloaded on SIGHUP")
                        }
                        Err(error) => {
                            tracing::error!(module = %outcome.module, error = %error, "plugin reload on SIGHUP failed")
                        }
                    }
                }
            }
        });
    }
    let state = switchyard_server::AppState::new(router);
    switchyard_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("switchyard stopped");
    Ok(ExitCode::SUCCESS)
}

/// Whether the embedded stores are empty (no customers yet).
async fn needs_demo_data(router: &Router) -> bool {
    match router
        .query("SELECT COUNT(*) FROM customers", &[], &Default::default())
        .await
    {
        Ok(rs) => matches!(
            rs.rows.first().and_then(|r| r.first()),
            Some(switchyard_core::Value::Int(0)) | None
        ),
        Err(_) => true,
    }
}

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
        () = ctrl_c => {},
        () = term => {},
    }
}

/// `switchyard plugin check`: load, describe, and route sample statements.
async fn plugin_check(
    file: &std::path::Path,
    config: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    use switchyard_plugin_host::{HostLimits, PluginEngine};
    let config = switchyard_config::load_file(config)?;
    let catalog = switchyard_core::Catalog::from_config(&config);
    let limits = HostLimits {
        call_timeout: std::time::Duration::from_millis(config.plugins.call_timeout_ms),
        max_memory_bytes: usize::try_from(config.plugins.max_memory_bytes).unwrap_or(usize::MAX),
        ..HostLimits::default()
    };
    let engine = Arc::new(PluginEngine::new(limits).map_err(|e| anyhow::anyhow!("{e}"))?);
    let started = std::time::Instant::now();
    let plugin = match engine.load(file, &catalog).await {
        Ok(p) => p,
        Err(err) => {
            eprintln!("FAIL  {}: {err}", file.display());
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                eprintln!("      caused by: {s}");
                source = s.source();
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "plugin {} {} (contract {}) loaded in {:.1} ms, sha256 {}",
        plugin.info.name,
        plugin.info.version,
        plugin.info.contract,
        started.elapsed().as_secs_f64() * 1000.0,
        plugin.sha256
    );
    let mut failures = 0;
    let mut timings = Vec::new();
    for sql in sample_statements(&catalog) {
        let (plan, request) =
            match switchyard_core::plan_with_request(&sql, &[], &catalog, Vec::new(), Vec::new()) {
                Ok(p) => p,
                Err(e) => {
                    println!("\n> {sql}\n  (not routed: {e})");
                    continue;
                }
            };
        let t = std::time::Instant::now();
        let answer = plugin.route(&request);
        timings.push(t.elapsed());
        println!("\n> {sql}");
        match answer {
            Ok(route) => {
                let text = switchyard_core::describe::describe_route(
                    &route,
                    &plan.query.statement,
                    &catalog,
                );
                for line in text.lines() {
                    println!("  {line}");
                }
            }
            Err(err) => {
                if err.code() != switchyard_core::ErrorCode::NoRoute {
                    failures += 1;
                }
                println!("  {}: {err}", err.code());
            }
        }
    }
    timings.sort();
    if let Some(median) = timings.get(timings.len() / 2) {
        println!(
            "\n{} statements, median route call {:.1} us",
            timings.len(),
            median.as_secs_f64() * 1e6
        );
    }
    if failures > 0 {
        println!("{failures} call(s) failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A point lookup, a scan and a keyed delete per table.
fn sample_statements(catalog: &switchyard_core::Catalog) -> Vec<String> {
    use switchyard_core::LogicalType;
    let mut out = Vec::new();
    for t in catalog.tables.values() {
        let key: Vec<String> = t
            .primary_key
            .iter()
            .map(|&c| {
                let col = &t.columns[c];
                let literal = match col.ty {
                    LogicalType::Int | LogicalType::Float | LogicalType::Decimal { .. } => {
                        "1".to_owned()
                    }
                    LogicalType::Bool => "true".to_owned(),
                    LogicalType::Timestamp => "'2024-01-01T00:00:00Z'".to_owned(),
                    LogicalType::Date => "'2024-01-01'".to_owned(),
                    LogicalType::Text | LogicalType::Json => "'sample'".to_owned(),
                };
                format!("{} = {literal}", col.name)
            })
            .collect();
        let key = key.join(" AND ");
        out.push(format!("SELECT * FROM {} WHERE {key}", t.name));
        out.push(format!("SELECT * FROM {} LIMIT 10", t.name));
        out.push(format!("DELETE FROM {} WHERE {key}", t.name));
    }
    out
}
