//! When an automation fires: the builder's schedule as five-field cron,
//! read in its IANA time zone, with one DST policy for every kind of
//! schedule.
//!
//! The policy is about wall-clock times, because that is what a builder
//! writes ("daily at 02:30"):
//! - every scheduled wall-clock time fires once, at its first instant, so a
//!   time inside the repeated autumn hour fires once (Kubernetes CronJob
//!   fires it twice, kubernetes/kubernetes#121594);
//! - a scheduled time inside the spring-forward gap fires at the first
//!   valid instant after the gap (the end of the gap), and several gap times
//!   that land on that one instant fire once.
//!
//! Matching runs on naive local times (croner on `NaiveDateTime`, where no
//! clock jumps) and each match is then placed on the time line with
//! chrono-tz. Placing is monotonic, so the fires come out in order, and
//! nothing depends on the replica's own time zone (tokio-cron-scheduler's
//! drift of an hour, its #107).

use std::fmt;

use agentshare_proto::registry::v1 as registry;
use chrono::{DateTime, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// How the builder expressed the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cron,
    Hourly,
    Daily,
    Weekly,
}

agentshare_kit::enum_names!(Kind {
    Cron => "cron",
    Hourly => "hourly",
    Daily => "daily",
    Weekly => "weekly",
});

/// A parsed schedule in its zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub kind: Kind,
    /// Five-field cron, derived for HOURLY, DAILY and WEEKLY.
    pub cron: String,
    pub zone: Tz,
    parsed: Cron,
}

/// One instant at which an automation fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    /// Microseconds since the epoch, UTC.
    pub at_micros: i64,
    /// The same instant in the automation's zone, RFC 3339 with offset.
    pub local: String,
    /// The schedule named a local time that does not exist that day.
    pub shifted_by_dst: bool,
}

/// Why a stored or received schedule cannot be used. Registry validates
/// schedules on deploy, so this means data written by another version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSchedule(pub String);

impl fmt::Display for BadSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many matches one search may look at before it gives up: far more
/// than any real schedule needs for the fires asked of it.
const SEARCH_LIMIT: usize = 200_000;
/// How far before the start a search begins in local time, so a start
/// inside a repeated hour or just after a gap still sees the wall-clock
/// times that map after it.
const LOOKBACK_SECS: i64 = 3 * 3600;
/// The longest clock jump in any zone is a day (Samoa, 2011).
const MAX_GAP_SECS: i64 = 86_400;

fn weekday_name(day: u32) -> &'static str {
    match day {
        1 => "Monday",
        2 => "Tuesday",
        3 => "Wednesday",
        4 => "Thursday",
        5 => "Friday",
        6 => "Saturday",
        _ => "Sunday",
    }
}

impl Schedule {
    /// The schedule of a registry automation.
    pub fn of_automation(automation: &registry::Automation) -> Result<Self, BadSchedule> {
        use registry::schedule::Kind as R;
        let bad = |why: &str| BadSchedule(format!("automation {:?}: {why}", automation.key));
        let time = |t: Option<&registry::TimeOfDay>| {
            t.filter(|t| (0..24).contains(&t.hours) && (0..60).contains(&t.minutes))
                .map(|t| (t.hours, t.minutes))
                .ok_or_else(|| bad("time of day out of range"))
        };
        let (kind, cron) = match automation.schedule.as_ref().and_then(|s| s.kind.as_ref()) {
            None => return Err(bad("no schedule")),
            Some(R::Cron(cron)) => (Kind::Cron, cron.expression.trim().to_string()),
            Some(R::Hourly(hourly)) if (0..60).contains(&hourly.minute) => {
                (Kind::Hourly, format!("{} * * * *", hourly.minute))
            }
            Some(R::Hourly(_)) => return Err(bad("minute out of range")),
            Some(R::Daily(daily)) => {
                let (h, m) = time(daily.time_of_day.as_ref())?;
                (Kind::Daily, format!("{m} {h} * * *"))
            }
            Some(R::Weekly(weekly)) => {
                let (h, m) = time(weekly.time_of_day.as_ref())?;
                let day = match registry::DayOfWeek::try_from(weekly.day_of_week) {
                    Ok(registry::DayOfWeek::Unspecified) | Err(_) => {
                        return Err(bad("no day of the week"));
                    }
                    // Cron counts Sunday as 0; the registry as 7.
                    Ok(day) => (day as i32) % 7,
                };
                (Kind::Weekly, format!("{m} {h} * * {day}"))
            }
        };
        Self::parse(kind, &cron, &automation.time_zone)
    }

    /// A schedule as stored: its kind, its cron and its zone.
    pub fn parse(kind: Kind, cron: &str, zone: &str) -> Result<Self, BadSchedule> {
        let zone: Tz = zone
            .parse()
            .map_err(|_| BadSchedule(format!("{zone:?} is not an IANA time zone")))?;
        let parsed = agentshare_kit::cron::parse(cron)
            .map_err(|e| BadSchedule(format!("{cron:?} is not five-field cron: {e}")))?;
        Ok(Self {
            kind,
            cron: cron.to_string(),
            zone,
            parsed,
        })
    }

    /// The schedule in words, for example "Daily at 08:00 Europe/Berlin".
    pub fn description(&self) -> String {
        let zone = self.zone.name();
        let fields: Vec<&str> = self.cron.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u32>().ok());
        match (self.kind, number(0), number(1), number(4)) {
            (Kind::Hourly, Some(m), _, _) => format!("Hourly at :{m:02} {zone}"),
            (Kind::Daily, Some(m), Some(h), _) => format!("Daily at {h:02}:{m:02} {zone}"),
            (Kind::Weekly, Some(m), Some(h), Some(d)) => {
                format!("Weekly on {} at {h:02}:{m:02} {zone}", weekday_name(d))
            }
            _ => format!("Cron \"{}\" {zone}", self.cron),
        }
    }

    /// The next `count` fires strictly after `after_micros`.
    pub fn fires_after(&self, after_micros: i64, count: usize) -> Vec<Fire> {
        let mut fires: Vec<Fire> = Vec::with_capacity(count);
        if count == 0 {
            return fires;
        }
        let Some(after) = DateTime::<Utc>::from_timestamp_micros(after_micros) else {
            return fires;
        };
        let local = after.with_timezone(&self.zone).naive_local();
        let Some(start) = local.checked_sub_signed(chrono::TimeDelta::seconds(LOOKBACK_SECS))
        else {
            return fires;
        };
        for naive in self.parsed.iter_after(start).take(SEARCH_LIMIT) {
            let Some((instant, shifted)) = self.place(naive) else {
                continue;
            };
            let at_micros = instant.timestamp_micros();
            let repeated = fires.last().is_some_and(|last| last.at_micros >= at_micros);
            if at_micros <= after_micros || repeated {
                continue;
            }
            fires.push(Fire {
                at_micros,
                local: instant.to_rfc3339_opts(SecondsFormat::Secs, false),
                shifted_by_dst: shifted,
            });
            if fires.len() == count {
                break;
            }
        }
        fires
    }

    /// The first fire strictly after `after_micros`.
    pub fn next_after(&self, after_micros: i64) -> Option<Fire> {
        self.fires_after(after_micros, 1).into_iter().next()
    }

    /// Places a wall-clock time on the time line: its first instant, or the
    /// end of the gap it falls in (then `true`).
    fn place(&self, naive: NaiveDateTime) -> Option<(DateTime<Tz>, bool)> {
        match self.zone.from_local_datetime(&naive) {
            LocalResult::Single(instant) => Some((instant, false)),
            LocalResult::Ambiguous(earlier, _) => Some((earlier, false)),
            LocalResult::None => {
                // Clocks jump at whole seconds, so the first wall-clock second
                // that exists is where the gap ends.
                (1..=MAX_GAP_SECS).find_map(|s| {
                    let later = naive.checked_add_signed(chrono::TimeDelta::seconds(s))?;
                    let instant = self.zone.from_local_datetime(&later).earliest()?;
                    Some((instant, true))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("instant")
            .timestamp_micros()
    }

    fn utc(micros: i64) -> String {
        DateTime::<Utc>::from_timestamp_micros(micros)
            .expect("instant")
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn daily(h: i32, m: i32, zone: &str) -> Schedule {
        Schedule::of_automation(&registry::Automation {
            key: "report".into(),
            schedule: Some(registry::Schedule {
                kind: Some(registry::schedule::Kind::Daily(registry::DailySchedule {
                    time_of_day: Some(registry::TimeOfDay {
                        hours: h,
                        minutes: m,
                    }),
                })),
            }),
            time_zone: zone.into(),
            ..Default::default()
        })
        .expect("schedule")
    }

    fn cron(expression: &str, zone: &str) -> Schedule {
        Schedule::parse(Kind::Cron, expression, zone).expect("schedule")
    }

    /// The fires after `from` as (UTC, local, shifted).
    fn fires(schedule: &Schedule, from: &str, count: usize) -> Vec<(String, String, bool)> {
        schedule
            .fires_after(micros(from), count)
            .into_iter()
            .map(|f| (utc(f.at_micros), f.local, f.shifted_by_dst))
            .collect()
    }

    /// A fire as a test expects it: (UTC, local, shifted by DST).
    type Expected<'a> = (&'a str, &'a str, bool);

    /// The fires of `schedule` after `from` are `expected`.
    fn assert_fires(schedule: &Schedule, from: &str, expected: &[Expected<'_>]) {
        let expected: Vec<(String, String, bool)> = expected
            .iter()
            .map(|&(at, local, shifted)| (at.into(), local.into(), shifted))
            .collect();
        assert_eq!(
            fires(schedule, from, expected.len()),
            expected,
            "{} from {from}",
            schedule.description()
        );
    }

    #[test]
    fn daylight_saving_gaps_fire_at_their_end_and_repeats_fire_once() {
        let berlin = daily(2, 30, "Europe/Berlin");
        // Two gap times and the gap's end are one instant: it fires once.
        let berlin_both = cron("0,30 2,3 * * *", "Europe/Berlin");
        let new_york = daily(2, 30, "America/New_York");
        let new_york_0130 = daily(1, 30, "America/New_York");
        let sydney = daily(2, 30, "Australia/Sydney");
        // Each case: the schedule, when it is asked, and the fires that
        // follow as (UTC, local, shifted by DST).
        let cases: [(&Schedule, &str, &[Expected<'_>]); 11] = [
            // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00Z).
            (
                &berlin,
                "2026-03-27T12:00:00Z",
                &[
                    ("2026-03-28T01:30:00Z", "2026-03-28T02:30:00+01:00", false),
                    ("2026-03-29T01:00:00Z", "2026-03-29T03:00:00+02:00", true),
                    ("2026-03-30T00:30:00Z", "2026-03-30T02:30:00+02:00", false),
                ],
            ),
            (
                &berlin_both,
                "2026-03-29T00:30:00Z",
                &[
                    ("2026-03-29T01:00:00Z", "2026-03-29T03:00:00+02:00", true),
                    ("2026-03-29T01:30:00Z", "2026-03-29T03:30:00+02:00", false),
                    ("2026-03-30T00:00:00Z", "2026-03-30T02:00:00+02:00", false),
                ],
            ),
            // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00Z); 02:00–03:00
            // happens twice.
            (
                &berlin,
                "2026-10-24T12:00:00Z",
                &[
                    ("2026-10-25T00:30:00Z", "2026-10-25T02:30:00+02:00", false),
                    ("2026-10-26T01:30:00Z", "2026-10-26T02:30:00+01:00", false),
                ],
            ),
            // Asked from inside the second pass of the hour, after the first
            // 02:30 fired: the second 02:30 is not a new fire.
            (
                &berlin,
                "2026-10-25T01:10:00Z",
                &[("2026-10-26T01:30:00Z", "2026-10-26T02:30:00+01:00", false)],
            ),
            // Asked from inside the first pass, before 02:30: it fires then.
            (
                &berlin,
                "2026-10-25T00:10:00Z",
                &[("2026-10-25T00:30:00Z", "2026-10-25T02:30:00+02:00", false)],
            ),
            // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00Z).
            (
                &new_york,
                "2026-03-07T12:00:00Z",
                &[
                    ("2026-03-08T07:00:00Z", "2026-03-08T03:00:00-04:00", true),
                    ("2026-03-09T06:30:00Z", "2026-03-09T02:30:00-04:00", false),
                    ("2026-03-10T06:30:00Z", "2026-03-10T02:30:00-04:00", false),
                ],
            ),
            // 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00Z); 01:00–02:00
            // happens twice.
            (
                &new_york_0130,
                "2026-10-31T12:00:00Z",
                &[
                    ("2026-11-01T05:30:00Z", "2026-11-01T01:30:00-04:00", false),
                    ("2026-11-02T06:30:00Z", "2026-11-02T01:30:00-05:00", false),
                ],
            ),
            (
                &new_york_0130,
                "2026-11-01T06:15:00Z",
                &[("2026-11-02T06:30:00Z", "2026-11-02T01:30:00-05:00", false)],
            ),
            // 2026-04-05: 03:00 AEDT becomes 02:00 AEST (2026-04-04T16:00Z).
            (
                &sydney,
                "2026-04-04T00:00:00Z",
                &[
                    ("2026-04-04T15:30:00Z", "2026-04-05T02:30:00+11:00", false),
                    ("2026-04-05T16:30:00Z", "2026-04-06T02:30:00+10:00", false),
                ],
            ),
            (
                &sydney,
                "2026-04-04T16:10:00Z",
                &[("2026-04-05T16:30:00Z", "2026-04-06T02:30:00+10:00", false)],
            ),
            // 2026-10-04: 02:00 AEST becomes 03:00 AEDT (2026-10-03T16:00Z).
            (
                &sydney,
                "2026-10-02T12:00:00Z",
                &[
                    ("2026-10-02T16:30:00Z", "2026-10-03T02:30:00+10:00", false),
                    ("2026-10-03T16:00:00Z", "2026-10-04T03:00:00+11:00", true),
                    ("2026-10-04T15:30:00Z", "2026-10-05T02:30:00+11:00", false),
                ],
            ),
        ];
        for (schedule, from, expected) in cases {
            assert_fires(schedule, from, expected);
        }
    }

    #[test]
    fn hourly_schedules_keep_order_and_never_repeat_across_both_transitions() {
        let hourly = Schedule::parse(Kind::Hourly, "15 * * * *", "Europe/Berlin").expect("hourly");
        for from in ["2026-03-28T22:00:00Z", "2026-10-24T22:00:00Z"] {
            let all = hourly.fires_after(micros(from), 8);
            assert_eq!(all.len(), 8);
            for pair in all.windows(2) {
                assert!(pair[0].at_micros < pair[1].at_micros, "{pair:?}");
            }
            let locals: Vec<&str> = all.iter().map(|f| &f.local[11..16]).collect();
            let mut unique = locals.clone();
            unique.dedup();
            assert_eq!(locals, unique, "a wall-clock time fired twice: {locals:?}");
        }
        // Spring: 02:15 does not exist; it fires at 03:00, then 03:15.
        let spring: Vec<String> = hourly
            .fires_after(micros("2026-03-29T00:00:00Z"), 3)
            .into_iter()
            .map(|f| f.local)
            .collect();
        assert_eq!(
            spring,
            [
                "2026-03-29T01:15:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00"
            ]
        );
    }

    #[test]
    fn the_next_three_fire_times_and_weekly_days() {
        let weekly = Schedule::of_automation(&registry::Automation {
            key: "digest".into(),
            schedule: Some(registry::Schedule {
                kind: Some(registry::schedule::Kind::Weekly(registry::WeeklySchedule {
                    day_of_week: registry::DayOfWeek::Sunday as i32,
                    time_of_day: Some(registry::TimeOfDay {
                        hours: 18,
                        minutes: 0,
                    }),
                })),
            }),
            time_zone: "UTC".into(),
            ..Default::default()
        })
        .expect("weekly");
        assert_eq!(weekly.cron, "0 18 * * 0");
        assert_fires(
            &weekly,
            "2026-11-23T09:00:00Z",
            &[
                ("2026-11-29T18:00:00Z", "2026-11-29T18:00:00+00:00", false),
                ("2026-12-06T18:00:00Z", "2026-12-06T18:00:00+00:00", false),
                ("2026-12-13T18:00:00Z", "2026-12-13T18:00:00+00:00", false),
            ],
        );
        // Exactly at a fire time, that time is not "next".
        assert_eq!(
            weekly
                .next_after(micros("2026-11-29T18:00:00Z"))
                .map(|f| utc(f.at_micros)),
            Some("2026-12-06T18:00:00Z".into())
        );
    }

    #[test]
    fn schedules_in_words() {
        assert_eq!(
            daily(8, 0, "Europe/Berlin").description(),
            "Daily at 08:00 Europe/Berlin"
        );
        assert_eq!(
            Schedule::parse(Kind::Hourly, "15 * * * *", "America/New_York")
                .expect("hourly")
                .description(),
            "Hourly at :15 America/New_York"
        );
        assert_eq!(
            Schedule::parse(Kind::Weekly, "30 9 * * 1", "Australia/Sydney")
                .expect("weekly")
                .description(),
            "Weekly on Monday at 09:30 Australia/Sydney"
        );
        assert_eq!(
            cron("0 8 * * 1-5", "Europe/Berlin").description(),
            "Cron \"0 8 * * 1-5\" Europe/Berlin"
        );
    }

    #[test]
    fn bad_schedules_are_named() {
        assert!(Schedule::parse(Kind::Cron, "0 8 * *", "UTC").is_err());
        assert!(Schedule::parse(Kind::Cron, "0 8 * * *", "Mars/Olympus").is_err());
    }
}
