//! Time as every service sees it. Production reads the system clock; tests
//! hold a manual clock they move, so expiry and schedules are exercised
//! without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands still at `start_micros` until advanced.
    pub fn manual(start_micros: i64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(start_micros))),
        }
    }

    /// Microseconds since the Unix epoch, UTC.
    pub fn now_micros(&self) -> i64 {
        match &self.manual {
            Some(now) => now.load(Ordering::SeqCst),
            None => system_micros(),
        }
    }

    pub fn now_secs(&self) -> i64 {
        self.now_micros() / 1_000_000
    }

    /// Moves a manual clock forward; a system clock cannot be moved.
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(now) = &self.manual {
            let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
            now.fetch_add(by, Ordering::SeqCst);
        }
    }
}

fn system_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A protobuf timestamp from stored microseconds.
/// Microseconds since the epoch of a protobuf timestamp, saturating at the
/// ends of `i64` (callers that must refuse odd times check the range).
pub fn micros_of(time: &prost_types::Timestamp) -> i64 {
    time.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(time.nanos) / 1_000)
}

/// A duration in microseconds, saturating for the absurdly long.
pub fn duration_micros(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

/// A time as people read it in notices and summaries, to the minute in UTC:
/// "2026-12-20 14:00 UTC".
pub fn utc_minute(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map_or_else(
        || format!("{micros} µs after the epoch"),
        |time| time.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}
