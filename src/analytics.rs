//! The support report: its parameters (range, bucket, time zone), and the pure function that
//! turns analytics facts into it. `GET /api/chat/analytics` feeds it the `analytics` projection's
//! facts; `chatd analytics` feeds it facts folded from the log in memory (never the projection's
//! tables) by the same fold, so both give the same report.
//!
//! A fact counts when its event's `recorded_at` lies in `[from, to)`: a reply or first response
//! counts in the range where the admin's answer falls. Percentiles are nearest-rank (the
//! smallest value with at least p% of the values at or below it).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Utc};
use projections::{AnalyticsFact, ConversationFacts, FactKind, LoggedEvent, ProjectionError};
use serde::Serialize;

use crate::wire::wire_time;

/// The longest range a report may cover.
pub const MAX_RANGE_DAYS: i64 = 366;
/// The range when `from` is not given.
pub const DEFAULT_RANGE_DAYS: i64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Week => "week",
        }
    }
}

/// Where bucket boundaries fall: an IANA zone or a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

impl Zone {
    /// An IANA name (`Asia/Shanghai`, `UTC`) or an offset (`+08:00`, `-0530`, `Z`). A `+` that
    /// a query string decoded into a space is read as `+`.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let text = text.trim_end();
        let text = match text.strip_prefix(' ') {
            Some(rest) => format!("+{}", rest.trim_start()),
            None => text.to_string(),
        };
        if text == "Z" {
            return Ok(Zone::Fixed(FixedOffset::east_opt(0).ok_or("bad offset")?));
        }
        if let Some(sign) = text.chars().next().filter(|c| *c == '+' || *c == '-') {
            let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
            let valid = digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit());
            let (hours, minutes) = if valid {
                (
                    digits[..2].parse::<i32>().unwrap_or(99),
                    digits[2..].parse::<i32>().unwrap_or(99),
                )
            } else {
                (99, 99)
            };
            if hours > 14 || minutes > 59 {
                return Err(format!("unknown time zone or offset {text:?}"));
            }
            let seconds = (hours * 3600 + minutes * 60) * if sign == '-' { -1 } else { 1 };
            return FixedOffset::east_opt(seconds)
                .map(Zone::Fixed)
                .ok_or_else(|| format!("unknown time zone or offset {text:?}"));
        }
        text.parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| format!("unknown time zone {text:?} (want an IANA name or +HH:MM)"))
    }

    /// The local calendar date of an instant (µs since the epoch).
    pub fn local_date(self, micros: i64) -> NaiveDate {
        let utc = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
        match self {
            Zone::Named(tz) => utc.with_timezone(&tz).date_naive(),
            Zone::Fixed(offset) => utc.with_timezone(&offset).date_naive(),
        }
    }

    pub fn name(self) -> String {
        match self {
            Zone::Named(tz) => tz.name().to_string(),
            Zone::Fixed(offset) => offset.to_string(),
        }
    }
}

/// A checked request for a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportParams {
    /// µs since the epoch, inclusive.
    pub from: i64,
    /// µs since the epoch, exclusive.
    pub to: i64,
    pub bucket: Bucket,
    pub zone: Zone,
}

fn parse_time(text: &str, name: &str) -> Result<i64, String> {
    let text = text.trim();
    let parsed = DateTime::parse_from_rfc3339(text).or_else(|e| {
        // A `+hh:mm` offset whose `+` a query string decoded into a space.
        match text.rfind(' ') {
            Some(i) if i > 10 => {
                DateTime::parse_from_rfc3339(&format!("{}+{}", &text[..i], &text[i + 1..]))
            }
            _ => Err(e),
        }
    });
    parsed
        .map(|t| t.timestamp_micros())
        .map_err(|_| format!("{name} must be an RFC 3339 time such as 2025-07-14T00:00:00Z"))
}

impl ReportParams {
    /// Checks raw parameters; `now` (µs) is the default `to`. The error is for the caller.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        bucket: Option<&str>,
        tz: Option<&str>,
        now: i64,
    ) -> Result<ReportParams, String> {
        let to = match to {
            Some(text) => parse_time(text, "to")?,
            None => now,
        };
        let from = match from {
            Some(text) => parse_time(text, "from")?,
            None => to - DEFAULT_RANGE_DAYS * 86_400_000_000,
        };
        if from > to {
            return Err("from must not be after to".into());
        }
        if to - from > MAX_RANGE_DAYS * 86_400_000_000 {
            return Err(format!("the range may cover at most {MAX_RANGE_DAYS} days"));
        }
        let bucket = match bucket.map(str::trim) {
            None | Some("day") => Bucket::Day,
            Some("week") => Bucket::Week,
            Some(other) => return Err(format!("unknown bucket {other:?} (want day or week)")),
        };
        let zone = match tz {
            None => Zone::Named(chrono_tz::UTC),
            Some(text) => Zone::parse(text)?,
        };
        Ok(ReportParams {
            from,
            to,
            bucket,
            zone,
        })
    }

    fn contains(&self, at: i64) -> bool {
        self.from <= at && at < self.to
    }

    /// The first day of the bucket holding this local date (weeks start on Monday).
    fn bucket_start(&self, date: NaiveDate) -> NaiveDate {
        match self.bucket {
            Bucket::Day => date,
            Bucket::Week => date - Duration::days(i64::from(date.weekday().num_days_from_monday())),
        }
    }
}

/// Average and percentiles of durations, in seconds; null when there are none.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Timing {
    pub count: u64,
    pub avg_seconds: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

/// Nearest rank over sorted values: the value at rank ceil(percent / 100 * n), in integers so
/// no rounding moves a rank.
fn nearest_rank(sorted: &[i64], percent: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent * sorted.len()).div_ceil(100);
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn seconds(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

impl Timing {
    fn of(mut waits: Vec<i64>) -> Timing {
        waits.sort_unstable();
        let count = waits.len() as u64;
        let sum: i128 = waits.iter().map(|w| i128::from(*w)).sum();
        Timing {
            count,
            avg_seconds: (count > 0).then(|| sum as f64 / count as f64 / 1_000_000.0),
            p50_seconds: nearest_rank(&waits, 50).map(seconds),
            p90_seconds: nearest_rank(&waits, 90).map(seconds),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Satisfaction {
    pub count: u64,
    pub average: Option<f64>,
    /// Ratings "1" to "5", each with how many times it was given.
    pub distribution: BTreeMap<String, u64>,
}

impl Satisfaction {
    fn of(ratings: &[i64]) -> Satisfaction {
        let mut distribution: BTreeMap<String, u64> =
            (1..=5).map(|r: i64| (r.to_string(), 0)).collect();
        for rating in ratings {
            *distribution.entry(rating.to_string()).or_default() += 1;
        }
        let count = ratings.len() as u64;
        let sum: i64 = ratings.iter().sum();
        Satisfaction {
            count,
            average: (count > 0).then(|| sum as f64 / count as f64),
            distribution,
        }
    }
}

/// Messages in one bucket, by side.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VolumeBucket {
    /// The bucket's first local day (`YYYY-MM-DD`; a Monday for weeks) in the report's zone.
    #[schema(example = "2025-07-14")]
    pub start: String,
    pub user: u64,
    pub admin: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ConversationCounts {
    /// Conversations opened in the range.
    pub opened: u64,
    /// Closes in the range.
    pub closed: u64,
    /// Of the conversations opened in the range, the share closed in the range; null when none
    /// were opened.
    pub resolution_rate: Option<f64>,
}

/// One admin's part (see the per-admin rule in the README).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AdminReport {
    pub admin_id: u64,
    pub first_response: Timing,
    pub reply_time: Timing,
    /// Messages this admin sent.
    pub messages: u64,
    /// Closes of conversations assigned to (else last answered by) this admin.
    pub closed: u64,
    pub satisfaction: Satisfaction,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// RFC 3339 UTC, inclusive.
    pub from: String,
    /// RFC 3339 UTC, exclusive.
    pub to: String,
    /// `day` or `week`.
    pub bucket: String,
    /// The zone whose local days make the buckets.
    pub tz: String,
    pub first_response: Timing,
    pub reply_time: Timing,
    pub volume: Vec<VolumeBucket>,
    pub conversations: ConversationCounts,
    pub satisfaction: Satisfaction,
    pub per_admin: Vec<AdminReport>,
}

#[derive(Default)]
struct AdminFacts {
    first_response: Vec<i64>,
    reply: Vec<i64>,
    messages: u64,
    closed: u64,
    ratings: Vec<i64>,
}

/// The report over the facts whose time lies in the range (others are ignored); the order of
/// the facts does not matter.
pub fn report<'a>(
    params: &ReportParams,
    facts: impl IntoIterator<Item = &'a AnalyticsFact>,
) -> Report {
    let mut first_response = Vec::new();
    let mut reply = Vec::new();
    let mut ratings = Vec::new();
    let mut opened = HashSet::new();
    let mut closed_conversations = HashSet::new();
    let mut closed = 0u64;
    let mut volume: BTreeMap<NaiveDate, (u64, u64)> = BTreeMap::new();
    let mut admins: BTreeMap<u64, AdminFacts> = BTreeMap::new();
    // Every bucket of the range appears, even an empty one.
    if params.from < params.to {
        let last = params.bucket_start(params.zone.local_date(params.to - 1));
        let mut day = params.bucket_start(params.zone.local_date(params.from));
        while day <= last {
            volume.insert(day, (0, 0));
            day += Duration::days(match params.bucket {
                Bucket::Day => 1,
                Bucket::Week => 7,
            });
        }
    }
    for fact in facts {
        if !params.contains(fact.at) {
            continue;
        }
        let mut admin = fact.admin_id.map(|id| admins.entry(id).or_default());
        match fact.kind {
            FactKind::Opened => {
                opened.insert(fact.conversation_id);
            }
            FactKind::Closed => {
                closed += 1;
                closed_conversations.insert(fact.conversation_id);
                if let Some(a) = admin.as_mut() {
                    a.closed += 1;
                }
            }
            FactKind::UserMessage | FactKind::AdminMessage => {
                let day = params.bucket_start(params.zone.local_date(fact.at));
                let counts = volume.entry(day).or_default();
                if fact.kind == FactKind::UserMessage {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                    if let Some(a) = admin.as_mut() {
                        a.messages += 1;
                    }
                }
            }
            FactKind::Reply => {
                reply.push(fact.value);
                if let Some(a) = admin.as_mut() {
                    a.reply.push(fact.value);
                }
            }
            FactKind::FirstResponse => {
                first_response.push(fact.value);
                if let Some(a) = admin.as_mut() {
                    a.first_response.push(fact.value);
                }
            }
            FactKind::Feedback => {
                ratings.push(fact.value);
                if let Some(a) = admin.as_mut() {
                    a.ratings.push(fact.value);
                }
            }
        }
    }
    let resolved = opened
        .iter()
        .filter(|id| closed_conversations.contains(id))
        .count();
    Report {
        from: wire_time(params.from),
        to: wire_time(params.to),
        bucket: params.bucket.as_str().to_string(),
        tz: params.zone.name(),
        first_response: Timing::of(first_response),
        reply_time: Timing::of(reply),
        volume: volume
            .into_iter()
            .map(|(day, (user, admin))| VolumeBucket {
                start: day.format("%Y-%m-%d").to_string(),
                user,
                admin,
            })
            .collect(),
        conversations: ConversationCounts {
            opened: opened.len() as u64,
            closed,
            resolution_rate: (!opened.is_empty()).then(|| resolved as f64 / opened.len() as f64),
        },
        satisfaction: Satisfaction::of(&ratings),
        per_admin: admins
            .into_iter()
            .map(|(admin_id, a)| AdminReport {
                admin_id,
                first_response: Timing::of(a.first_response),
                reply_time: Timing::of(a.reply),
                messages: a.messages,
                closed: a.closed,
                satisfaction: Satisfaction::of(&a.ratings),
            })
            .collect(),
    }
}

/// Folds the log in memory, keeping the facts that fall in the range: what `chatd analytics`
/// does, independently of the projection's tables.
#[derive(Debug)]
pub struct LogFold {
    range: (i64, i64),
    conversations: HashMap<u64, ConversationFacts>,
    scratch: Vec<AnalyticsFact>,
    pub facts: Vec<AnalyticsFact>,
    pub events: u64,
}

impl LogFold {
    pub fn new(params: &ReportParams) -> LogFold {
        LogFold {
            range: (params.from, params.to),
            conversations: HashMap::new(),
            scratch: Vec::new(),
            facts: Vec::new(),
            events: 0,
        }
    }

    pub fn apply(&mut self, event: &LoggedEvent) -> Result<(), ProjectionError> {
        let id = event.conversation_id()?;
        self.conversations
            .entry(id)
            .or_default()
            .fold(event, &mut self.scratch)?;
        let (from, to) = self.range;
        self.facts.extend(
            self.scratch
                .drain(..)
                .filter(|fact| from <= fact.at && fact.at < to),
        );
        self.events += 1;
        Ok(())
    }
}

/// The report computed by folding the whole log from position 0.
pub async fn report_from_log(
    store: &crate::store::EventStore,
    params: &ReportParams,
) -> Result<Report, ProjectionError> {
    let mut fold = LogFold::new(params);
    let mut position = 0;
    loop {
        let batch = store
            .read_from(position, crate::store::MAX_READ_BATCH)
            .await?;
        let Some(last) = batch.last() else {
            break;
        };
        position = last.position;
        for event in batch {
            fold.apply(&LoggedEvent::from(event))?;
        }
    }
    Ok(report(params, &fold.facts))
}

/// The report as text, for a terminal.
pub fn render_text(report: &Report) -> String {
    use std::fmt::Write;
    fn timing(t: &Timing) -> String {
        match (t.avg_seconds, t.p50_seconds, t.p90_seconds) {
            (Some(avg), Some(p50), Some(p90)) => format!(
                "{} answered, avg {avg:.1} s, p50 {p50:.1} s, p90 {p90:.1} s",
                t.count
            ),
            _ => "none".to_string(),
        }
    }
    fn satisfaction(s: &Satisfaction) -> String {
        match s.average {
            Some(avg) => format!(
                "{} ratings, average {avg:.2} ({})",
                s.count,
                s.distribution
                    .iter()
                    .map(|(r, n)| format!("{r}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "no ratings".to_string(),
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Support report {} to {} (buckets: {}, {})",
        report.from, report.to, report.bucket, report.tz
    );
    let _ = writeln!(out, "First response:  {}", timing(&report.first_response));
    let _ = writeln!(out, "Reply time:      {}", timing(&report.reply_time));
    let c = &report.conversations;
    let _ = writeln!(
        out,
        "Conversations:   {} opened, {} closed, resolution rate {}",
        c.opened,
        c.closed,
        c.resolution_rate
            .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0))
    );
    let _ = writeln!(
        out,
        "Satisfaction:    {}",
        satisfaction(&report.satisfaction)
    );
    let _ = writeln!(out, "Messages ({}, user / admin):", report.bucket);
    for bucket in &report.volume {
        let _ = writeln!(
            out,
            "  {}  {:>8} {:>8}",
            bucket.start, bucket.user, bucket.admin
        );
    }
    for admin in &report.per_admin {
        let _ = writeln!(out, "Admin {}:", admin.admin_id);
        let _ = writeln!(out, "  first response  {}", timing(&admin.first_response));
        let _ = writeln!(out, "  reply time      {}", timing(&admin.reply_time));
        let _ = writeln!(
            out,
            "  {} messages, {} closed; {}",
            admin.messages,
            admin.closed,
            satisfaction(&admin.satisfaction)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_nearest_rank() {
        let values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(nearest_rank(&values, 50), Some(5));
        assert_eq!(nearest_rank(&values, 90), Some(9));
        assert_eq!(nearest_rank(&values[..5], 90), Some(5));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn zones_parse_names_and_offsets() {
        assert!(matches!(
            Zone::parse("Asia/Shanghai"),
            Ok(Zone::Named(chrono_tz::Asia::Shanghai))
        ));
        assert_eq!(
            Zone::parse("+08:00"),
            Ok(Zone::Fixed(FixedOffset::east_opt(8 * 3600).unwrap()))
        );
        assert_eq!(
            Zone::parse(" 08:00"),
            Ok(Zone::Fixed(FixedOffset::east_opt(8 * 3600).unwrap()))
        );
        assert_eq!(
            Zone::parse("-05:30"),
            Ok(Zone::Fixed(FixedOffset::west_opt(5 * 3600 + 1800).unwrap()))
        );
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert!(Zone::parse("+25:00").is_err());
    }

    #[test]
    fn a_range_is_checked() {
        let now = 1_750_000_000_000_000;
        assert!(ReportParams::parse(None, None, None, None, now).is_ok());
        assert!(
            ReportParams::parse(
                Some("2025-07-02T00:00:00Z"),
                Some("2025-07-01T00:00:00Z"),
                None,
                None,
                now
            )
            .is_err()
        );
        assert!(
            ReportParams::parse(
                Some("2024-01-01T00:00:00Z"),
                Some("2025-07-01T00:00:00Z"),
                None,
                None,
                now
            )
            .is_err()
        );
        assert!(ReportParams::parse(None, None, Some("month"), None, now).is_err());
        assert!(ReportParams::parse(Some("yesterday"), None, None, None, now).is_err());
    }
}
