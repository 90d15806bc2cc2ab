//! Pins of retiring versions (DESIGN.md, "Access model (sharing)",
//! Versions): a pin, a user's or a grant's, holds while its version is not
//! deprecated or its sunset is still ahead; from the sunset on it no longer
//! decides anything, and runs use the latest version. Decided with the
//! clock at each call, so a retirement takes effect exactly at its sunset
//! without a timer.

use agentshare_kit::Error;
use agentshare_kit::clock::utc_minute;

/// One deprecated version of an agent.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Retirement {
    pub version: i64,
    /// When the version retires, UTC microseconds.
    pub sunset_at: i64,
    pub note: String,
}

/// Where a pinned version stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing<'a> {
    /// Not deprecated: the pin holds.
    Kept,
    /// Deprecated, its sunset still ahead: the pin holds until then.
    Retiring(&'a Retirement),
    /// Its sunset has passed: runs use the latest version.
    Retired(&'a Retirement),
}

/// Where `version` stands at `now`, among an agent's `retirements`.
pub fn standing(version: i64, retirements: &[Retirement], now: i64) -> Standing<'_> {
    match retirements.iter().find(|r| r.version == version) {
        None => Standing::Kept,
        Some(retirement) if retirement.sunset_at <= now => Standing::Retired(retirement),
        Some(retirement) => Standing::Retiring(retirement),
    }
}

/// The pin that decides a run's version: `pinned`, unless its version has
/// retired, when the run follows the latest version.
pub fn in_force(pinned: Option<i64>, retirements: &[Retirement], now: i64) -> Option<i64> {
    pinned.filter(|version| !matches!(standing(*version, retirements, now), Standing::Retired(_)))
}

/// A pin in words: "pinned to v2", "pinned to v2, retires on …", or
/// "pinned to v2, retired on …: runs v5".
pub fn summary(version: i64, standing: Standing<'_>, latest: i64) -> String {
    match standing {
        Standing::Kept => format!("pinned to v{version}"),
        Standing::Retiring(r) => {
            format!(
                "pinned to v{version}, retires on {}",
                utc_minute(r.sunset_at)
            )
        }
        Standing::Retired(r) => format!(
            "pinned to v{version}, retired on {}: runs v{latest}",
            utc_minute(r.sunset_at)
        ),
    }
}

/// A new pin (a user's, or a grant's) may name a deprecated version until
/// its sunset, never a retired one: it would decide nothing.
pub fn require_pinnable(
    field: &str,
    version: i64,
    retirements: &[Retirement],
    now: i64,
) -> Result<(), Error> {
    match standing(version, retirements, now) {
        Standing::Retired(r) => Err(Error::FailedPrecondition(format!(
            "{field}: version {version} retired on {}; pin a later version, or follow the latest",
            utc_minute(r.sunset_at)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000;

    fn retiring(version: i64, sunset_at: i64) -> Retirement {
        Retirement {
            version,
            sunset_at,
            note: "move to v3".into(),
        }
    }

    #[test]
    fn a_pin_holds_until_its_sunset_then_runs_follow_the_latest() {
        let retirements = [retiring(1, NOW - 1), retiring(2, NOW + 1)];
        assert_eq!(
            in_force(Some(3), &retirements, NOW),
            Some(3),
            "not deprecated"
        );
        assert_eq!(
            in_force(Some(2), &retirements, NOW),
            Some(2),
            "before the sunset"
        );
        assert_eq!(
            in_force(Some(2), &retirements, NOW + 1),
            None,
            "at the sunset"
        );
        assert_eq!(in_force(Some(1), &retirements, NOW), None, "after it");
        assert_eq!(in_force(None, &retirements, NOW), None);
    }

    #[test]
    fn a_pin_reads_as_where_its_version_stands() {
        let retirements = [retiring(2, 1_766_239_200_000_000)];
        let at = |now| standing(2, &retirements, now);
        assert_eq!(summary(3, standing(3, &retirements, 0), 5), "pinned to v3");
        assert_eq!(
            summary(2, at(0), 5),
            "pinned to v2, retires on 2025-12-20 14:00 UTC"
        );
        assert_eq!(
            summary(2, at(i64::MAX), 5),
            "pinned to v2, retired on 2025-12-20 14:00 UTC: runs v5"
        );
    }

    #[test]
    fn only_a_version_not_yet_retired_is_pinned() {
        let retirements = [retiring(1, NOW - 1), retiring(2, NOW + 1)];
        assert!(require_pinnable("version", 2, &retirements, NOW).is_ok());
        assert!(require_pinnable("version", 3, &retirements, NOW).is_ok());
        let refused = require_pinnable("version", 1, &retirements, NOW).expect_err("retired");
        assert!(
            matches!(&refused, Error::FailedPrecondition(m) if m.contains("pin a later version")),
            "{refused:?}"
        );
    }
}
