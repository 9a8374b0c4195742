//! `chatd audit verify` and `chatd audit export`: the auditor's tools on the command line. They
//! read the log only.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use anyhow::Context;

use crate::store::{CONVERSATION_STREAM, EventStore, MAX_READ_BATCH};

/// Checks every stream's hash chain; an error (non-zero exit) naming the first broken link.
pub async fn verify(store: &EventStore) -> anyhow::Result<()> {
    // The bar draws on stderr, and only when stdout is a terminal: piped output stays clean.
    let bar = if std::io::stdout().is_terminal() {
        let bar = indicatif::ProgressBar::new(store.head_position().await?);
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
    let started = Instant::now();
    let report = store
        .verify_log(|checked, head| {
            if let Some(bar) = &bar {
                bar.set_length(head.max(checked));
                bar.set_position(checked);
            }
        })
        .await
        .context("reading the event log")?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    match report.broken {
        None => {
            println!(
                "ok: every hash chain holds; {} events checked in {seconds:.1} s ({:.0} events/s)",
                report.checked,
                report.checked as f64 / seconds.max(1e-9)
            );
            Ok(())
        }
        Some(broken) if broken.stream_id.is_empty() => {
            println!("broken: position {}: {}", broken.position, broken.reason);
            anyhow::bail!(
                "the log is missing events from position {}",
                broken.position
            )
        }
        Some(broken) => {
            println!(
                "broken: stream {}/{} sequence {} (position {}): {}",
                broken.stream_type,
                broken.stream_id,
                broken.sequence,
                broken.position,
                broken.reason
            );
            anyhow::bail!(
                "the hash chain of stream {}/{} breaks at sequence {}",
                broken.stream_type,
                broken.stream_id,
                broken.sequence
            )
        }
    }
}

/// Prints a conversation's events, one JSON object per line, in sequence order.
pub async fn export(store: &EventStore, conversation: u64, format: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        format == "jsonl",
        "unknown format {format:?} (only jsonl is supported)"
    );
    let stream_id = conversation.to_string();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut after = 0;
    let mut written = 0u64;
    loop {
        let page = store
            .read_stream_page(CONVERSATION_STREAM, &stream_id, after, MAX_READ_BATCH)
            .await
            .context("reading the event log")?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        for event in page {
            let line = serde_json::to_string(&crate::wire::audit::AuditEventView::from(event))
                .context("encoding an event")?;
            writeln!(out, "{line}").context("writing to stdout")?;
            written += 1;
        }
    }
    out.flush().context("writing to stdout")?;
    anyhow::ensure!(written > 0, "conversation {conversation} has no events");
    Ok(())
}
