//! The measuring loop every bench binary shares: a fixed number of calls
//! split over concurrent workers, latencies in one HDR histogram, one line
//! per workload.

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Prints one workload's throughput and latency quantiles.
#[allow(clippy::print_stdout)]
pub fn report(name: &str, histogram: &Histogram<u64>, elapsed: Duration) {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name:<44} n={:>6}  {:>7.0} ops/s  p50={:>7.2} ms  p99={:>7.2} ms  p99.9={:>7.2} ms",
        histogram.len(),
        histogram.len() as f64 / elapsed.as_secs_f64(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
    );
}

/// Runs `call(n)` for n in `0..calls` over `concurrency` workers, each
/// worker taking a contiguous range of n, and reports the workload.
pub async fn measure<F, Fut>(name: &str, calls: usize, concurrency: usize, call: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per_worker = calls / concurrency;
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            for n in 0..per_worker {
                let begin = Instant::now();
                call(worker * per_worker + n).await;
                histogram
                    .record(begin.elapsed().as_micros() as u64)
                    .expect("record");
            }
            histogram
        }));
    }
    let mut total = Histogram::<u64>::new(3).expect("histogram");
    for worker in workers {
        total.add(worker.await.expect("worker")).expect("add");
    }
    report(
        &format!("{name}, concurrency {concurrency}"),
        &total,
        started.elapsed(),
    );
}
