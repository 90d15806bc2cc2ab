//! Domain values as the scheduler stores them.

use agentshare_kit::db::StoredList;

use crate::subscriptions::rules::{Channel, StopReason};

/// Channels are a comma-separated list.
impl StoredList for Channel {
    fn list(stored: &str) -> Result<Vec<Self>, String> {
        Ok(Self::parse_list(stored))
    }
}

impl From<String> for StopReason {
    fn from(stored: String) -> Self {
        Self::parse(&stored)
    }
}
