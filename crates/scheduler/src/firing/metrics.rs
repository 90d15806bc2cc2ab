//! The scheduler's own metrics: how runs end, and how late they start.
//!
//! - `agentshare.scheduler.runs` (counter, `{run}`), by `outcome`: the
//!   status a run is recorded with: `succeeded`, `failed`, `skipped` (the
//!   user lost access at fire time, or the catch-up policy skipped the time)
//!   or `missed` (a time that passed during downtime; one per time, however
//!   many fold into one row).
//! - `agentshare.scheduler.fire_lateness` (histogram, seconds): from a run's
//!   scheduled time to its start, retries after a lost lease included.

use agentshare_kit::telemetry::meter;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

use crate::firing::storage::Outcome;

#[derive(Clone)]
pub struct FireMetrics {
    runs: Counter<u64>,
    lateness: Histogram<f64>,
}

impl FireMetrics {
    /// Makes the instruments from the global meter (telemetry's `init` first).
    pub fn new() -> Self {
        let meter = meter();
        Self {
            runs: meter
                .u64_counter("agentshare.scheduler.runs")
                .with_unit("{run}")
                .with_description("Automation runs recorded, by outcome")
                .build(),
            lateness: meter
                .f64_histogram("agentshare.scheduler.fire_lateness")
                .with_unit("s")
                .with_description("How long after its scheduled time a run started")
                .with_boundaries(vec![
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ])
                .build(),
        }
    }

    pub fn started(&self, lateness_micros: i64) {
        // A run started early means the clock moved back: report it as 0.
        let seconds = lateness_micros.max(0) as f64 / 1e6;
        self.lateness.record(seconds, &[]);
    }

    pub fn finished(&self, outcome: &Outcome) {
        let outcome = match outcome {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::Failed { .. } => "failed",
            Outcome::AccessLost { .. } => "skipped",
        };
        self.count(outcome, 1);
    }

    /// Times recorded without running: `missed` or `skipped`.
    pub fn not_run(&self, missed: u64, skipped: u64) {
        self.count("missed", missed);
        self.count("skipped", skipped);
    }

    fn count(&self, outcome: &'static str, n: u64) {
        if n > 0 {
            self.runs.add(n, &[KeyValue::new("outcome", outcome)]);
        }
    }
}
