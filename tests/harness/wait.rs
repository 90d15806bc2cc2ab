//! Waiting for what the suite does on its own time (an event followed, a
//! replica leaving the rotation, a run finished): the one place the tests
//! poll. A test never sleeps: it waits here for something to happen, or on
//! a barrier the code offers (such as [`crate::Suite::firing_passes`]) before
//! it asserts that something did not.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How long [`eventually`] waits before the test fails.
pub const EVENTUALLY_WITHIN: Duration = Duration::from_secs(20);

/// How often a probe is asked again.
const POLL: Duration = Duration::from_millis(50);

/// A probe's answer: done with a value, or not yet (with what it saw, for
/// the failure message).
pub trait Probed {
    type Value;
    fn done(self) -> Result<Self::Value, String>;
}

impl<T> Probed for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T, E: Debug> Probed for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.map_err(|seen| format!("; last seen: {seen:?}"))
    }
}

/// Asks `probe` until it is done, for at most [`EVENTUALLY_WITHIN`]; the
/// test fails naming `what`.
pub async fn eventually<P, F, Fut>(what: &str, probe: F) -> P::Value
where
    P: Probed,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    eventually_within(EVENTUALLY_WITHIN, what, probe).await
}

/// [`eventually`] with a deadline of its own.
pub async fn eventually_within<P, F, Fut>(limit: Duration, what: &str, probe: F) -> P::Value
where
    P: Probed,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    match polling(POLL, limit, what, probe).await {
        Ok(value) => value,
        Err(failure) => panic!("{failure}"),
    }
}

/// Asks `probe` every `every` until it is done, for at most `limit`; the
/// error names `what` and what the probe last saw. For tools that time
/// what they wait for, such as the bench timing a start, and so need a
/// finer poll than the tests.
pub async fn polling<P, F, Fut>(
    every: Duration,
    limit: Duration,
    what: &str,
    mut probe: F,
) -> Result<P::Value, String>
where
    P: Probed,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let seen = match probe().await.done() {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{what} did not happen within {limit:?}{seen}"));
        }
        tokio::time::sleep(every).await;
    }
}
