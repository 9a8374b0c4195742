//! The operator's commands: `chatd [serve]`, `chatd migrate`.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::startup::{Application, open_store, shutdown_signal};
use crate::store::redact_url;

#[derive(Debug, Parser)]
#[command(name = "chatd", version, about = "Event-sourced support-chat backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (what a bare `chatd` does).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env().context("reading configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&config).await,
        Command::Migrate => {
            let store = open_store(&config).await?;
            println!("migrations applied to {}", redact_url(&config.database_url));
            store.close().await;
            Ok(())
        }
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    tracing::info!(
        addr = %app.local_addr()?,
        database = %redact_url(&config.database_url),
        backend = app.state().store.backend().name(),
        "chatd listening"
    );
    app.run_until(shutdown_signal()).await
}
