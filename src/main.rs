//! The `civic` command: serve any part of civic, and the operator's tools.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use civic::{Application, MODULES, Options, Target};
use civic_kit::auth::{Principal, Role};
use civic_kit::config::Config;
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use figment::value::{Dict, Value};

mod bench;
mod import;

/// mimalloc: the request path allocates many small, short-lived buffers across threads, which
/// glibc's allocator served slowly under load (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The values of `--target`: `all`, `gateway` and every registered service.
fn targets() -> PossibleValuesParser {
    PossibleValuesParser::new(Target::names(MODULES))
}

/// civic runs a city street office's community work: the service hall and its reception desk,
/// grids and visits, residents' problems, volunteers and the monthly assessment.
#[derive(Debug, Parser)]
#[command(name = "civic", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves a target: every service in one process (`all`), one service, or the gateway.
    Serve(ServeArgs),
    /// Applies the database migrations of a target and exits (for a Kubernetes Job).
    Migrate(MigrateArgs),
    /// Loads the Zhongjie Street demo data (idempotent).
    Seed(CommonArgs),
    /// Measures civic under load: named scenarios against a civic it starts itself (or a running
    /// one), as ratios to a baseline measured in the same run. See docs/performance.md.
    Bench(bench::BenchArgs),
    /// Mints a development token signed with the dev key.
    Token(TokenArgs),
    /// Imports data into a running civic: `civic import roster FILE.csv --street … --community …`.
    Import(import::ImportArgs),
    /// Looks into events that were set aside as dead letters, and sends them again.
    Events(EventsArgs),
    /// Prints the effective configuration as TOML.
    Config(CommonArgs),
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the embedded store and local secrets live.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// What to run: every service, the gateway alone, or one service.
    #[arg(long, default_value = "all", value_parser = targets())]
    target: String,
    /// The gRPC listen address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    grpc_addr: Option<String>,
    /// The HTTP listen address (metrics, health probes).
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<String>,
    /// Load the Zhongjie Street demo data before serving.
    #[arg(long)]
    seed: bool,
}

#[derive(Debug, Args)]
struct MigrateArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Whose databases to migrate.
    #[arg(long, default_value = "all", value_parser = targets())]
    target: String,
}

#[derive(Debug, Args)]
struct EventsArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Lists every service's dead letters: events the bus refused, or a consumer kept failing on.
    DeadLetters,
    /// Sends a dead letter again (back into its service's outbox); consumers that applied it
    /// before skip it.
    Replay {
        /// The event's id, as `dead-letters` lists it.
        id: String,
    },
}

#[derive(Debug, Args)]
struct TokenArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The user the token speaks for.
    #[arg(long, default_value = "dev")]
    subject: String,
    /// A role (repeatable): resident, grid_worker, cadre, party_volunteer, department_officer, admin.
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
    /// The street scope.
    #[arg(long, default_value = "zhongjie")]
    street: String,
    /// The community scope, if any.
    #[arg(long)]
    community: Option<String>,
    /// A grid scope (repeatable).
    #[arg(long = "grid")]
    grids: Vec<String>,
    /// How long the token is valid, in hours.
    #[arg(long, default_value_t = 12)]
    hours: u64,
}

fn load(common: &CommonArgs, extra: Dict) -> anyhow::Result<Config> {
    let mut flags = extra;
    if let Some(dir) = &common.data_dir {
        flags.insert("data_dir".into(), Value::from(dir.display().to_string()));
    }
    Ok(Config::load(common.config.as_deref(), &flags, &civic::service_names(MODULES))?)
}

fn target(name: &str) -> anyhow::Result<Target> {
    Target::parse(name, MODULES).map_err(anyhow::Error::msg)
}

/// `civic events`: dead letters across every service's database.
async fn events(config: &Config, command: EventsCommand) -> anyhow::Result<()> {
    let mut found = false;
    for module in MODULES {
        let db = civic::open_database(config, *module).await?;
        match &command {
            EventsCommand::DeadLetters => {
                for letter in civic_kit::events::dead_letters(&db, 1000).await? {
                    found = true;
                    let consumer = if letter.consumer.is_empty() { "(the bus)" } else { letter.consumer.as_str() };
                    println!(
                        "{}\t{}\t{}\t{}\t{}\tattempts={}\tset aside {}\t{}",
                        module.name(),
                        letter.event.id,
                        consumer,
                        letter.event.topic,
                        letter.event.key,
                        letter.attempts,
                        letter.dead_at,
                        letter.reason
                    );
                }
            }
            EventsCommand::Replay { id } => {
                if civic_kit::events::replay(&db, id).await? {
                    found = true;
                    println!("{}: {id} is pending again; the service's relay sends it on its next pass", module.name());
                }
            }
        }
        db.close().await;
    }
    match command {
        EventsCommand::DeadLetters if !found => println!("no dead letters"),
        EventsCommand::Replay { id } if !found => anyhow::bail!("no dead letter {id}"),
        _ => {}
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The benchmark runs on a runtime of its own, pinned to its CPU when asked.
    if let Command::Bench(args) = cli.command {
        return match bench::main(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("civic bench: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("civic: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("civic: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let mut flags = Dict::new();
            if let Some(a) = &args.grpc_addr {
                flags.insert("grpc_addr".into(), Value::from(a.clone()));
            }
            if let Some(a) = &args.http_addr {
                flags.insert("http_addr".into(), Value::from(a.clone()));
            }
            let config = load(&args.common, flags)?;
            let target = target(&args.target)?;
            let _telemetry = civic_kit::telemetry::init(&config.log, target.name());
            if config.nats_url.is_empty() && matches!(target, Target::Service(_)) {
                tracing::warn!("no nats_url: events stay inside this process; other replicas will not hear them");
            }
            let app = Application::build(config, target, Options { seed: args.seed, ..Options::default() }).await?;
            app.run_until_stopped().await
        }
        Command::Migrate(args) => {
            let config = load(&args.common, Dict::new())?;
            let _telemetry = civic_kit::telemetry::init(&config.log, "migrate");
            for module in target(&args.target)?.services(MODULES) {
                civic::open_database(&config, module).await?.close().await;
                tracing::info!(service = module.name(), "migrated");
            }
            Ok(())
        }
        Command::Seed(common) => {
            let config = load(&common, Dict::new())?;
            let _telemetry = civic_kit::telemetry::init(&config.log, "seed");
            for (service, added) in civic::seed(&config, MODULES).await? {
                println!("{service}: seeded {added}");
            }
            Ok(())
        }
        // Dispatched in `main`, before this runtime exists.
        Command::Bench(_) => anyhow::bail!("civic bench runs on a runtime of its own"),
        Command::Token(args) => {
            let config = load(&args.common, Dict::new())?;
            let auth = civic::effective_auth(&config, Target::All)?;
            if auth.dev_mode != Some(true) {
                anyhow::bail!(
                    "civic token mints development tokens only; this configuration takes tokens from the identity provider"
                );
            }
            let principal = Principal {
                subject: args.subject,
                roles: args.roles,
                street: Some(args.street),
                community: args.community,
                grids: args.grids,
            };
            let token = civic_kit::auth::mint_dev_token(&auth, &principal, Duration::from_secs(args.hours * 3600))
                .context("minting a token")?;
            println!("{token}");
            Ok(())
        }
        Command::Import(args) => import::main(args).await,
        Command::Events(args) => {
            let config = load(&args.common, Dict::new())?;
            let _telemetry = civic_kit::telemetry::init(&config.log, "events");
            events(&config, args.command).await
        }
        Command::Config(common) => {
            let mut config = load(&common, Dict::new())?;
            // Secrets are shown as set or not, never printed.
            if !config.secret_key.is_empty() {
                config.secret_key = "(set)".into();
            }
            if config.auth.dev_key.is_some() {
                config.auth.dev_key = Some("(set)".into());
            }
            if !config.directory.client_secret.is_empty() {
                config.directory.client_secret = "(set)".into();
            }
            config.database_url = civic_kit::config::redacted_url(&config.database_url);
            config.nats_url = civic_kit::config::redacted_url(&config.nats_url);
            // The process-wide settings, then each service's own section.
            let mut document = toml::Table::try_from(&config).context("printing the configuration")?;
            for module in MODULES {
                let section = module.settings(&config.section(module.name()))?;
                document
                    .insert(module.name().to_owned(), toml::Value::try_from(section).context("printing a section")?);
            }
            print!("{}", toml::to_string_pretty(&document).context("printing the configuration")?);
            Ok(())
        }
    }
}
