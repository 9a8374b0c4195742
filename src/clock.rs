//! Wall-clock time for the service (the domain is never handed a clock).

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
