//! Logs: owns the process's tracing subscriber. Filtered by `RUST_LOG` (default `info`); JSON
//! lines when `CHAT_LOG_FORMAT=json`, human-readable text otherwise. Either way each line carries
//! the fields of the spans it was written in (the `request` span's `request_id` above all).
//!
//! It never decides what is logged, only how: callers use `tracing` macros.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable choosing the log format.
pub const FORMAT_VAR: &str = "CHAT_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event for people: `request{request_id=.. method=GET path=/x}: target: message`.
    Text,
    /// One JSON object per line for machines, span fields under `span` (the innermost span) and
    /// `spans` (every span from the outermost, so nested spans never hide the request id).
    Json,
}

impl LogFormat {
    /// `text` or `json` (any case), or nothing (text); anything else is a mistake the operator
    /// should hear of, not a silent fallback (start-up refuses it through the configuration).
    pub fn parse_strict(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(str::trim) {
            None | Some("") => Ok(LogFormat::Text),
            Some(v) if v.eq_ignore_ascii_case("text") => Ok(LogFormat::Text),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!("{FORMAT_VAR} must be text or json, got {other:?}")),
        }
    }

    /// `json` (any case) selects JSON; anything else, or nothing, selects text.
    pub fn parse(value: Option<&str>) -> LogFormat {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }

    pub fn from_env() -> LogFormat {
        LogFormat::parse(std::env::var(FORMAT_VAR).ok().as_deref())
    }
}

/// Installs the process's subscriber from the environment. Safe to call more than once: a second
/// call (tests) keeps the first subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: escape codes would garble collected logs.
    let ansi = std::io::stdout().is_terminal();
    let _ = build(LogFormat::from_env(), filter, std::io::stdout, ansi).try_init();
}

/// The subscriber `init` installs, writing to `writer`; tests use it with a buffer as a scoped
/// default to read what a request logs. No colours.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync + 'static>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    build(format, filter, writer, false)
}

fn build<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync + 'static>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_selects_json_logs() {
        assert_eq!(LogFormat::parse(Some("json")), LogFormat::Json);
        assert_eq!(LogFormat::parse(Some(" JSON ")), LogFormat::Json);
        assert_eq!(LogFormat::parse(Some("text")), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("")), LogFormat::Text);
        assert_eq!(LogFormat::parse(None), LogFormat::Text);
    }
}
