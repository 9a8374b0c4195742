//! The operator's commands: `chatd [serve]`, `chatd migrate`, `chatd replay`, `chatd session
//! create`, `chatd sign`, `chatd analytics`, `chatd audit`, `chatd import`.

mod audit;
mod import;
mod session;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::CONFIG_VAR;
use crate::config::Config;
use crate::settings::SETTINGS;
use crate::startup::{Application, open_and_migrate, open_store, shutdown_signal};
use crate::store::redact_url;

#[derive(Debug, Parser)]
#[command(name = "chatd", version, about = "Event-sourced support-chat backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `chatd serve`'s flags: one per setting (`--port`, env `CHAT_PORT`), and `--config FILE`.
#[derive(Debug, Default)]
pub struct ServeArgs {
    /// The settings given as flags or in their variables, as variable name -> value.
    pub given: Vec<(&'static str, String)>,
    /// A TOML file of settings under their keys.
    pub config: Option<std::path::PathBuf>,
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServeArgs {
            given: SETTINGS
                .iter()
                .filter(|setting| setting.var != CONFIG_VAR)
                .filter_map(|setting| {
                    matches
                        .get_one::<String>(setting.var)
                        .map(|value| (setting.var, value.clone()))
                })
                .collect(),
            config: matches
                .get_one::<String>(CONFIG_VAR)
                .map(std::path::PathBuf::from),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for ServeArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let command = command.arg(
            clap::Arg::new(CONFIG_VAR)
                .long("config")
                .env(CONFIG_VAR)
                .value_name("FILE")
                .help("A TOML file of settings under their keys (port = 10000, database_url = \"...\")"),
        );
        SETTINGS
            .iter()
            .filter(|setting| setting.var != CONFIG_VAR)
            .fold(command, |command, setting| {
                command.arg(
                    clap::Arg::new(setting.var)
                        .long(setting.flag)
                        .env(setting.var)
                        .hide_env_values(true)
                        .value_name("VALUE")
                        .help(format!(
                            "{} [default: {}]",
                            setting.meaning, setting.default
                        )),
                )
            })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (what a bare `chatd` does). Every setting is a flag, its `CHAT_*`
    /// variable, or a key of the `--config` file, in that order of precedence.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate {
        /// Create the MySQL database the URL names first, when it does not exist.
        #[arg(long)]
        create_database: bool,
    },
    /// Manage sessions (for trying the API; the login system writes them to Redis).
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Print the X-Timestamp and X-Signature headers for a request, for curl.
    Sign {
        /// GET, POST, PUT, ...
        method: String,
        /// Path and query exactly as sent, e.g. `/api/chat/messages?limit=5`.
        path: String,
        /// The raw body, if any.
        body: Option<String>,
    },
    /// Sign a request now and send it to the server (this machine's, or --url), printing the
    /// status and the answer; exits non-zero on a 4xx or 5xx.
    Curl {
        /// GET, POST, PUT, ...
        method: String,
        /// Path and query exactly as sent, e.g. `/api/chat/messages?limit=5`.
        path: String,
        /// The JSON body, if any.
        body: Option<String>,
        /// The session token (`chatd session create` prints one).
        #[arg(long, env = "CHAT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The server's base URL (default: http:// and this machine's CHAT_BIND and CHAT_PORT).
        #[arg(long)]
        url: Option<String>,
    },
    /// Rebuild read tables from the log into fresh tables and swap them in.
    Replay {
        /// Only this projection (default: all).
        #[arg(long)]
        projection: Option<String>,
    },
    /// Compute the support report by folding the log from position 0 (never the read tables).
    Analytics(AnalyticsArgs),
    /// Check the log's hash chains, or export a conversation's events.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The master key and the data keys it wraps: status, and rotation to a new master key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Import a legacy Node.js deployment's MySQL history (users, conversations, messages) into
    /// the log, keeping its ids and times; `chatd import verify` compares the two afterwards.
    /// Running it again imports nothing twice.
    Import(import::ImportArgs),
    /// Erase a person: the text they typed in every conversation of theirs (destroyed in the log
    /// and every view), their files, queued pushes and push devices. The audit trail keeps who
    /// erased them (this operator, as the system) and why. Running it again changes nothing.
    Erase {
        /// The person's user id.
        #[arg(long)]
        user_id: u64,
        /// Why, for the audit trail (a request under data protection law, a retention rule).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// How many data keys each master key wraps, and whether this configuration opens them.
    Status,
    /// Wrap every data key under a new master key while servers run. Restart the nodes first with
    /// CHAT_ENCRYPTION_KEY_FILE set to the new key and CHAT_ENCRYPTION_PREVIOUS_KEY_FILE to the
    /// old one (both open data keys meanwhile), run this with the same two, then unset the old.
    Rotate {
        /// The new master key's file, when CHAT_ENCRYPTION_KEY_FILE still names the old one.
        #[arg(long)]
        new_key_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct AnalyticsArgs {
    /// RFC 3339, inclusive (default: `to` minus 7 days).
    #[arg(long)]
    from: Option<String>,
    /// RFC 3339, exclusive (default: now).
    #[arg(long)]
    to: Option<String>,
    /// The zone whose local days make the buckets: IANA name or +HH:MM (default UTC).
    #[arg(long, allow_hyphen_values = true)]
    tz: Option<String>,
    /// day (default) or week.
    #[arg(long)]
    bucket: Option<String>,
    /// Print the API's JSON (`data` of GET /api/chat/analytics) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every stream's hash chain; exit non-zero naming the first broken link.
    Verify,
    /// Print a conversation's events, one JSON object per line.
    Export {
        #[arg(long)]
        conversation: u64,
        /// jsonl (the only format)
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Create a session and print its token.
    Create {
        #[arg(long)]
        user_id: u64,
        /// user, admin or auditor
        #[arg(long)]
        role: String,
        /// user_uuid_42 or admin_username
        #[arg(long)]
        identifier: String,
        /// e.g. 30m, 24h, 7d (default 24h)
        #[arg(long)]
        ttl: Option<String>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let config = match &command {
        Command::Serve(args) => Config::from_sources(args.config.as_deref(), &args.given),
        _ => Config::from_env(),
    }
    .context("reading configuration")?;
    match command {
        Command::Serve(_) => serve(&config).await,
        Command::Migrate { create_database } => {
            if create_database {
                create_mysql_database(&config.database_url).await?;
            }
            let (store, applied) = open_and_migrate(&config).await?;
            let target = redact_url(&config.database_url);
            if applied.is_empty() {
                println!("{target}: already up to date");
            } else {
                println!("{target}: applied");
                for migration in &applied {
                    println!("  {migration}");
                }
            }
            store.close().await;
            Ok(())
        }
        Command::Session {
            command:
                SessionCommand::Create {
                    user_id,
                    role,
                    identifier,
                    ttl,
                },
        } => {
            // Prints the token.
            session::session_create_command(&config, user_id, &role, &identifier, ttl.as_deref())
                .await?;
            Ok(())
        }
        Command::Sign { method, path, body } => {
            // Prints the two headers.
            session::sign_command(&config, &method, &path, body.as_deref())?;
            Ok(())
        }
        Command::Curl {
            method,
            path,
            body,
            token,
            url,
        } => {
            session::curl_command(
                &config,
                &method,
                &path,
                body.as_deref(),
                token.as_deref(),
                url.as_deref(),
            )
            .await
        }
        Command::Replay { projection } => {
            let store = open_store(&config).await?;
            let result = replay(&store, projection.as_deref()).await;
            store.close().await;
            result
        }
        Command::Analytics(args) => analytics(&config, &args).await,
        Command::Import(args) => import::run(&config, args).await,
        Command::Erase { user_id, reason } => erase(&config, user_id, &reason).await,
        Command::Keys { command } => keys(&config, command).await,
        Command::Audit { command } => {
            let store = open_store(&config).await?;
            let result = match command {
                AuditCommand::Verify => audit::verify(&store).await,
                AuditCommand::Export {
                    conversation,
                    format,
                } => audit::export(&store, conversation, &format).await,
            };
            store.close().await;
            result
        }
    }
}

/// `chatd keys status` and `chatd keys rotate`.
async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    use crate::store::{KEY_FILE_VARIABLE, MasterKey, PREVIOUS_KEY_FILE_VARIABLE};
    let mut config = config.clone();
    if let KeysCommand::Rotate {
        new_key_file: Some(path),
    } = &command
    {
        // The configured key becomes the one rotated away from.
        let new = MasterKey::from_file_named(path, "--new-key-file").map_err(anyhow::Error::msg)?;
        config.previous_master_key = config.master_key.take().or(config.previous_master_key);
        config.master_key = Some(std::sync::Arc::new(new));
    }
    // Opened without the start-up check: its purpose here is to say what does not open.
    let (store, _) = crate::startup::open_and_migrate_unchecked(&config).await?;
    let result = async {
        let role = |id: &str| {
            if config.master_key.as_ref().is_some_and(|k| k.id() == id) {
                format!("the new key ({KEY_FILE_VARIABLE} or --new-key-file)")
            } else if config.previous_master_key.as_ref().is_some_and(|k| k.id() == id) {
                format!("the old key ({PREVIOUS_KEY_FILE_VARIABLE} or {KEY_FILE_VARIABLE})")
            } else {
                "a key this configuration does not hold".to_string()
            }
        };
        match command {
            KeysCommand::Status => {
                let counts = store.data_key_counts().await?;
                let total: u64 = counts.iter().map(|(_, n)| n).sum();
                println!("{total} data keys (one per conversation with sealed text)");
                for (master, count) in &counts {
                    match master {
                        Some(id) => println!("  {count} wrapped by master key {id}: {}", role(id)),
                        None => println!("  {count} stored unwrapped"),
                    }
                }
                match &config.master_key {
                    Some(key) => println!("{KEY_FILE_VARIABLE}: master key {}", key.id()),
                    None => println!("{KEY_FILE_VARIABLE}: unset (data keys are stored unwrapped)"),
                }
                store.check_data_keys(false).await?;
                println!("this configuration opens every data key");
                Ok(())
            }
            KeysCommand::Rotate { .. } => {
                let Some(target) = config.master_key.clone() else {
                    anyhow::bail!(
                        "nothing to rotate to: set {KEY_FILE_VARIABLE} (the new key) or pass --new-key-file"
                    );
                };
                let rewrapped = store
                    .rotate_data_keys(&target, |done| eprintln!("rewrapped {done} data keys"))
                    .await?;
                let left: u64 = store
                    .data_key_counts()
                    .await?
                    .iter()
                    .filter(|(id, _)| id.as_deref() != Some(target.id()))
                    .map(|(_, n)| n)
                    .sum();
                println!(
                    "rewrapped {rewrapped} data keys under master key {}; {left} not under it",
                    target.id()
                );
                if left > 0 {
                    anyhow::bail!("{left} data keys are still under another key: run it again");
                }
                Ok(())
            }
        }
    }
    .await;
    store.close().await;
    result
}

/// `chatd erase`: the same use case as the admin route, as the system, on this process's own
/// command bus. The read tables (where the person's conversations are found, and which must
/// forget them) are brought up to the log's head first and after: by the nodes that hold the
/// projections' leases, or by this process when none does.
async fn erase(config: &Config, user_id: u64, reason: &str) -> anyhow::Result<()> {
    use std::time::Duration;
    let store = open_store(config).await?;
    let commands = crate::commands::CommandBus::start(store.clone(), 64).await?;
    let projections = projections::Projections::start(
        std::sync::Arc::new(store.clone()),
        projections::all_projectors(),
        commands.committed_head(),
        projections::RuntimeOptions::new(format!("chatd-erase-{}", std::process::id())),
    );
    let caught_up = |head: u64| {
        let projections = &projections;
        async move { projections.wait_for(head, Duration::from_secs(60)).await }
    };
    if !caught_up(store.head_position().await?).await {
        projections.stop().await;
        store.close().await;
        anyhow::bail!(
            "the read tables did not reach the log's head within a minute (a projection failed \
             or its node stopped): nothing was erased; see /readyz"
        );
    }
    let files = crate::files::FileStore::from_config(config)?;
    let eraser = crate::app::erasure::Eraser {
        store: &store,
        commands: &commands,
        files: &files,
    };
    let metadata = crate::store::EventMetadata {
        actor_id: 0,
        actor_role: events::Role::System.as_str().to_string(),
        request_id: Some("chatd-erase".to_string()),
        ..Default::default()
    };
    let erased = eraser
        .erase_person(crate::assignment::system_actor(), metadata, user_id, reason)
        .await;
    let applied = caught_up(store.head_position().await?).await;
    projections.stop().await;
    store.close().await;
    if !applied {
        eprintln!(
            "chatd: the erasure is in the log; the read tables will show it once their \
             projections reach it"
        );
    }
    let erased = erased.map_err(|error| anyhow::anyhow!("{}", error.message))?;
    if erased.already_erased {
        println!(
            "user {user_id} was already erased ({} conversations); nothing was left in the log",
            erased.conversations.len()
        );
    } else {
        println!(
            "user {user_id} erased: {} of {} conversations now",
            erased.erased_now.len(),
            erased.conversations.len()
        );
    }
    println!(
        "removed {} files, {} queued pushes, {} push devices",
        erased.files_removed, erased.pushes_removed, erased.devices_removed
    );
    Ok(())
}

async fn replay(store: &crate::store::EventStore, only: Option<&str>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use std::time::{Duration, Instant};

    let projectors: Vec<_> = projections::all_projectors()
        .into_iter()
        .filter(|p| only.is_none_or(|name| p.name() == name))
        .collect();
    if projectors.is_empty() {
        let known: Vec<_> = projections::all_projectors()
            .iter()
            .map(|p| p.name())
            .collect();
        anyhow::bail!(
            "no projection named {:?}; known: {}",
            only.unwrap_or_default(),
            known.join(", ")
        );
    }
    let names: Vec<_> = projectors.iter().map(|p| p.name()).collect();
    let head = store.head_position().await?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(head);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    tracing::info!(projections = ?names, head, "replay started");
    let started = Instant::now();
    let mut last_log = Instant::now();
    let position =
        projections::replay(
            store,
            &projectors,
            projections::REPLAY_BATCH,
            |progress| match &bar {
                Some(bar) => {
                    bar.set_length(progress.head.max(progress.position));
                    bar.set_position(progress.position);
                }
                None if last_log.elapsed() >= Duration::from_secs(2) => {
                    last_log = Instant::now();
                    tracing::info!(
                        applied = progress.applied,
                        position = progress.position,
                        head = progress.head,
                        "replaying"
                    );
                }
                None => {}
            },
        )
        .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "replayed {} up to position {position} in {seconds:.1} s ({:.0} events/s)",
        names.join(", "),
        position as f64 / seconds.max(1e-9)
    );
    Ok(())
}

async fn analytics(config: &Config, args: &AnalyticsArgs) -> anyhow::Result<()> {
    let params = crate::analytics::ReportParams::parse(
        args.from.as_deref(),
        args.to.as_deref(),
        args.bucket.as_deref(),
        args.tz.as_deref(),
        crate::clock::now_micros(),
    )
    .map_err(anyhow::Error::msg)?;
    let store = open_store(config).await?;
    let report = crate::analytics::report_from_log(&store, &params).await;
    store.close().await;
    let report = report.context("folding the log")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::analytics::render_text(&report));
    }
    Ok(())
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    tracing::info!(
        addr = %app.local_addr()?,
        database = %redact_url(&config.database_url),
        backend = app.state().store.backend().name(),
        "chatd listening"
    );
    let base = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", app.local_addr()?),
    };
    tracing::info!("web manager at {base}/admin");
    app.run_until(shutdown_signal()).await
}

/// `CREATE DATABASE IF NOT EXISTS` for the database a MySQL URL names (SQLite creates its file
/// itself).
async fn create_mysql_database(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    if !url.starts_with("mysql://") {
        println!("{}: SQLite creates its file itself", redact_url(url));
        return Ok(());
    }
    let (Some(name), Some(server)) = (
        crate::problems::database_name(url),
        crate::problems::server_url(url),
    ) else {
        anyhow::bail!(
            "CHAT_DATABASE_URL ({}): name a database made of letters, digits and _ to create it",
            redact_url(url)
        );
    };
    let mut connection = sqlx::MySqlConnection::connect(&server)
        .await
        .map_err(|error| anyhow::anyhow!(crate::problems::database(url, &error.into())))?;
    sqlx::raw_sql(&format!(
        "create database if not exists `{name}` character set utf8mb4 collate utf8mb4_unicode_ci"
    ))
    .execute(&mut connection)
    .await
    .map_err(|error| anyhow::anyhow!(crate::problems::database(url, &error.into())))?;
    let _ = connection.close().await;
    println!("{}: database {name} ready", redact_url(url));
    Ok(())
}
