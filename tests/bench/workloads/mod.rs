//! The hot paths, each measured through the gateway as a client calls it
//! and set against its limit from the same run.

pub mod access;
pub mod fire;
pub mod runs;
pub mod store;

use crate::measure::Load;
use crate::report::{Line, Report};
use crate::seed::BenchOrg;
use crate::target::Server;

/// What every workload needs: the server, the seeded org, the load, and
/// the limits measured before it.
pub struct Bench<'a> {
    pub server: &'a Server,
    pub org: &'a BenchOrg,
    pub load: Load,
    /// Appended to every line's detail: the backend and the topology.
    pub setting: String,
    pub limits: Limits,
    pub report: &'a mut Report,
}

/// The limits' lines, by what they bound.
pub struct Limits {
    pub echo: Line,
    pub reads: Line,
    pub writes: Line,
}

impl Bench<'_> {
    /// The detail of a line at the bench's concurrency, plus `what`.
    pub fn detail(&self, what: &str) -> String {
        self.detail_at(self.load.concurrency, what)
    }

    pub fn detail_at(&self, concurrency: usize, what: &str) -> String {
        let mut detail = format!("c{concurrency}, {}", self.setting);
        if !what.is_empty() {
            detail = format!("{what}, {detail}");
        }
        detail
    }
}
