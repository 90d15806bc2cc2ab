//! The measuring loop every call workload shares: `concurrency` workers
//! call back to back for a fixed time after a short warm-up, and every
//! latency goes into one HDR histogram. A failed call is counted, never
//! timed, and its first error is kept for the report.

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How long and how wide one workload runs.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub concurrency: usize,
    pub duration: Duration,
    /// Calls made and thrown away first: connections warm, caches and
    /// prepared statements filled, as on a server that has been up a while.
    pub warmup: Duration,
}

/// What one workload measured.
pub struct Sample {
    pub calls: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
}

impl Sample {
    pub fn empty() -> Self {
        Self {
            calls: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            latency: histogram(),
        }
    }

    pub fn per_second(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q`, in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn absorb(&mut self, other: Sample) {
        self.calls += other.calls;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency
            .add(other.latency)
            .expect("histograms of one bounds add");
    }
}

/// A histogram of microseconds from 1 µs to an hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records one latency, clamped into the histogram's range.
pub fn record(latency: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    latency.saturating_record(micros.max(1));
}

/// Runs `call(worker, n)` under `load` and returns what it measured. `n`
/// counts each worker's calls from 0, warm-up included, so a workload can
/// name keys or sessions after it. A call counts when it starts after the
/// warm-up; each worker stops starting calls when the time is up.
pub async fn measure<F, Fut>(load: Load, call: F) -> Sample
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let warm = Instant::now() + load.warmup;
    let end = warm + load.duration;
    let mut workers = Vec::with_capacity(load.concurrency);
    for worker in 0..load.concurrency {
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let mut sample = Sample::empty();
            let mut n = 0;
            loop {
                let begin = Instant::now();
                if begin >= end {
                    break;
                }
                let outcome = call(worker, n).await;
                n += 1;
                if begin < warm {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        sample.calls += 1;
                        record(&mut sample.latency, begin.elapsed());
                    }
                    Err(error) => {
                        sample.errors += 1;
                        sample.first_error.get_or_insert(error);
                    }
                }
            }
            sample
        }));
    }
    let mut total = Sample::empty();
    for worker in workers {
        match worker.await {
            Ok(sample) => total.absorb(sample),
            Err(panic) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert(format!("a worker panicked: {panic}"));
            }
        }
    }
    // The last calls end after the time is up; they count, so the time
    // they took does too.
    total.elapsed = Instant::now().saturating_duration_since(warm);
    total
}

/// Turns a gRPC answer into the loop's outcome, with the code in the text.
pub fn called<T>(answer: Result<T, tonic::Status>) -> Result<T, String> {
    answer.map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}
