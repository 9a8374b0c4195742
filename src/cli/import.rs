//! `chatd import` and `chatd import verify`: moving in from the legacy Node.js system's MySQL
//! database (see the README's "Moving from the Node.js server").

use std::io::IsTerminal;

use anyhow::Context;

use crate::app::import::verify::{VerifyError, VerifyReport, verify};
use crate::app::import::{
    DEFAULT_BATCH, ImportOptions, ImportReport, LegacyFiles, Note, import, parse_rewrite,
    read_tables_caught_up,
};
use crate::config::Config;
use crate::files::FileStore;
use crate::startup::open_store;
use crate::store::EventStore;
use crate::store::legacy::LegacySource;

/// Notes printed per list in the text summary (`--json` lists every one).
const NOTES_PRINTED: usize = 200;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub command: Option<ImportCommand>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Read and check everything, print the report, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Conversations per transaction (each is imported whole or not at all).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Compare every legacy conversation with what chatd shows of it; exit non-zero at the first
    /// difference.
    Verify(SourceArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// The legacy database, e.g. mysql://user:pass@host/legacy_db.
    #[arg(long, value_name = "URL", required = true)]
    pub from: Option<String>,
    /// Replace the start of matching file_urls: OLD=NEW (repeatable; the first match wins).
    #[arg(long, value_name = "OLD=NEW", value_parser = parse_rewrite)]
    pub rewrite_file_base: Vec<(String, String)>,
    /// The legacy server's uploads directory: each image and file message's file is copied from
    /// it into chatd's store (its type checked as for uploads); a file that cannot be is
    /// reported and its message keeps its link.
    #[arg(long, value_name = "DIR")]
    pub files_dir: Option<std::path::PathBuf>,
    /// The column of `users` that names a user (default: identifier, uuid or username).
    #[arg(long, value_name = "COLUMN")]
    pub user_identifier_column: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: &Config, args: ImportArgs) -> anyhow::Result<()> {
    let (source_args, verifying) = match &args.command {
        Some(ImportCommand::Verify(source)) => (source.clone(), true),
        None => (args.source.clone(), false),
    };
    let from = source_args
        .from
        .clone()
        .context("--from names the legacy database")?;
    let source = LegacySource::open(&from, source_args.user_identifier_column.as_deref())
        .await
        .map_err(anyhow::Error::msg)?;
    let store = open_store(config).await?;
    let files = match &source_args.files_dir {
        Some(dir) if !dir.is_dir() => {
            anyhow::bail!("--files-dir {}: not a directory", dir.display())
        }
        Some(dir) => Some(LegacyFiles {
            dir: dir.clone(),
            store: if verifying || args.dry_run {
                None
            } else {
                Some(FileStore::from_config(config)?)
            },
            max_bytes: config.max_upload_bytes,
            max_pixels: config.max_image_pixels,
        }),
        None => None,
    };
    let options = ImportOptions {
        dry_run: args.dry_run,
        batch: args.batch,
        rewrite_file_base: source_args.rewrite_file_base.clone(),
        files,
    };
    let result = if verifying {
        run_verify(&store, &source, &options, source_args.json).await
    } else {
        run_import(&store, &source, &options, source_args.json).await
    };
    source.close().await;
    store.close().await;
    result
}

async fn run_import(
    store: &EventStore,
    source: &LegacySource,
    options: &ImportOptions,
    json: bool,
) -> anyhow::Result<()> {
    let bar = progress_bar("conversations");
    let report = import(store, source, options, &mut |report, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            let counts = &report.conversations;
            bar.set_position(
                counts.imported
                    + counts.already_imported
                    + counts.updated
                    + counts.changed_in_both
                    + counts.skipped,
            );
        }
    })
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report.map_err(anyhow::Error::msg)?;
    if !options.dry_run && !read_tables_caught_up(store, "import").await? {
        eprintln!(
            "chatd: the history is in the log; the read tables will show it once their \
             projections reach it (see /readyz)"
        );
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

async fn run_verify(
    store: &EventStore,
    source: &LegacySource,
    options: &ImportOptions,
    json: bool,
) -> anyhow::Result<()> {
    if !read_tables_caught_up(store, "import-verify").await? {
        anyhow::bail!(
            "the read tables did not reach the log's head (a projection failed or stalled): \
             nothing compared; see /readyz"
        );
    }
    let bar = progress_bar("conversations");
    let outcome = verify(
        store,
        source,
        options,
        &mut |report: &VerifyReport, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(report.conversations);
            }
        },
    )
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match outcome {
        Ok(report) if json => println!("{}", serde_json::to_string(&report)?),
        Ok(report) => println!(
            "verified {} conversations and {} messages: chatd shows the legacy history as it was",
            report.conversations, report.messages
        ),
        Err(VerifyError::Difference {
            conversation,
            difference,
        }) => anyhow::bail!("conversation {conversation} differs: {difference}"),
        Err(error) => return Err(anyhow::Error::msg(error)),
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal.
fn progress_bar(what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what}  {{per_sec}}  eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// The report as text for an operator.
fn render(report: &ImportReport) -> String {
    let mut text = String::new();
    let verb = if report.dry_run {
        "would import"
    } else {
        "imported"
    };
    text.push_str(&format!(
        "{verb} {} conversations ({} already imported, {} of those updated, {} changed in both \
         systems, {} skipped), {} messages ({} skipped), \
         {} read receipts, {} files ({} copied, {} not copied; links: {} kept, {} rewritten): \
         {} events\n",
        report.conversations.imported,
        report.conversations.already_imported
            + report.conversations.updated
            + report.conversations.changed_in_both,
        report.conversations.updated,
        report.conversations.changed_in_both,
        report.conversations.skipped,
        report.messages.imported,
        report.messages.skipped,
        report.read_receipts,
        report.files.copied + report.files.kept + report.files.rewritten,
        report.files.copied,
        report.files.not_copied,
        report.files.kept,
        report.files.rewritten,
        report.events,
    ));
    for (title, notes) in [("skipped", &report.skipped), ("adjusted", &report.adjusted)] {
        if notes.is_empty() {
            continue;
        }
        text.push_str(&format!("{title} ({}):\n", notes.len()));
        for Note { table, id, reason } in notes.iter().take(NOTES_PRINTED) {
            text.push_str(&format!("  {table} {id}: {reason}\n"));
        }
        if notes.len() > NOTES_PRINTED {
            text.push_str(&format!(
                "  ... and {} more (--json lists every one)\n",
                notes.len() - NOTES_PRINTED
            ));
        }
    }
    if report.dry_run {
        text.push_str("dry run: nothing was written\n");
    }
    text
}
