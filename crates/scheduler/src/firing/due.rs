//! What a due subscription does with the scheduled times that came due
//! since it last fired: the catch-up rules, as plain functions.
//!
//! Normally one time is due and it runs. After downtime several are due, or
//! one is very late. Then the latest runs once, flagged as a catch-up, and
//! the earlier ones fold into one MISSED row; or, when the builder chose
//! SKIP_MISSED, every missed time is a SKIPPED row and none runs. Either way
//! the subscription goes on to its next time: scheduling never stops,
//! however many times were missed (Kubernetes CronJob gives up after 100).

use std::collections::VecDeque;

use crate::schedule::Schedule;

/// The builder's choice for times missed during downtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    RunLatestMissed,
    SkipMissed,
}

impl CatchUp {
    /// As stored on the subscription; anything else is the default.
    pub fn parse(text: &str) -> Self {
        match text {
            "skip_missed" => Self::SkipMissed,
            _ => Self::RunLatestMissed,
        }
    }
}

/// SKIPPED rows written for one outage at most; older missed times fold
/// into one MISSED row, so a long outage of a minutely schedule cannot
/// flood the history.
pub const MAX_SKIPPED_ROWS: usize = 1_000;
/// Scheduled times one outage is scanned for at most (about two years of a
/// minutely schedule). Past it, the scan jumps to the last day before now,
/// and the count of missed times is a lower bound.
const MAX_SCAN: i64 = 1_000_000;
/// How far before now the scan resumes after it gave up counting.
const JUMP_BACK_MICROS: i64 = 86_400_000_000;

/// The scheduled times due at `now`, from `first` (the subscription's next
/// run time, itself a scheduled time) on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTimes {
    pub first: i64,
    /// How many there are in all.
    pub count: i64,
    /// The latest ones, oldest first: at most `MAX_SKIPPED_ROWS + 1`.
    pub recent: VecDeque<i64>,
    /// The time just before `recent`, when older ones were dropped.
    pub before_recent: Option<i64>,
}

impl DueTimes {
    pub fn latest(&self) -> i64 {
        self.recent.back().copied().unwrap_or(self.first)
    }
}

/// Enumerates the scheduled times in `first..=now`.
pub fn due_times(schedule: &Schedule, first: i64, now: i64) -> DueTimes {
    let mut due = DueTimes {
        first,
        count: 0,
        recent: VecDeque::new(),
        before_recent: None,
    };
    let keep = |at: i64, due: &mut DueTimes| {
        due.count += 1;
        due.recent.push_back(at);
        if due.recent.len() > MAX_SKIPPED_ROWS + 1 {
            due.before_recent = due.recent.pop_front();
        }
    };
    if first > now {
        return due;
    }
    keep(first, &mut due);
    let mut after = first;
    // Most subscriptions are due once: ask for a few times first, and for
    // more only while they all fall due (a long outage). Asking for 512 at
    // once made the cron walk most of a mass fire's cost.
    let mut wanted = 2;
    loop {
        if due.count >= MAX_SCAN && after < now - JUMP_BACK_MICROS {
            after = now - JUMP_BACK_MICROS;
        }
        let fires = schedule.fires_after(after, wanted);
        wanted = (wanted * 8).min(512);
        let Some(last) = fires.last().map(|f| f.at_micros) else {
            return due;
        };
        for fire in &fires {
            if fire.at_micros > now {
                return due;
            }
            keep(fire.at_micros, &mut due);
        }
        after = last;
    }
}

/// One run row to write for a due subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    /// Runs now. `catch_up` when it stands for a time missed during
    /// downtime.
    Run { at: i64, catch_up: bool },
    /// Earlier times of one outage, folded: the first, the last and how
    /// many.
    Missed { first: i64, last: i64, count: i64 },
    /// One time the policy skipped.
    Skipped { at: i64 },
}

/// The rows for the times due now. A time more than `missed_after` late
/// counts as missed during downtime; every time but the latest is missed
/// whatever its lateness, since only one run per subscription catches up.
pub fn plan(due: &DueTimes, policy: CatchUp, now: i64, missed_after: i64) -> Vec<Row> {
    if due.count == 0 {
        return Vec::new();
    }
    let latest = due.latest();
    let late = now - latest > missed_after;
    let earlier: Vec<i64> = due
        .recent
        .iter()
        .copied()
        .filter(|at| *at != latest)
        .collect();
    // Times before the ones kept in `recent`, never more than the scan saw.
    let unseen = due.count - i64::try_from(due.recent.len()).unwrap_or(i64::MAX);
    let mut rows = Vec::new();
    match policy {
        CatchUp::RunLatestMissed => {
            let folded = due.count - 1;
            if folded > 0 {
                rows.push(Row::Missed {
                    first: due.first,
                    last: earlier.last().copied().unwrap_or(due.first),
                    count: folded,
                });
            }
            rows.push(Row::Run {
                at: latest,
                catch_up: late || folded > 0,
            });
        }
        CatchUp::SkipMissed => {
            let skipped = earlier.iter().copied().chain(late.then_some(latest));
            let skipped: Vec<i64> = skipped.collect();
            let over = skipped.len().saturating_sub(MAX_SKIPPED_ROWS);
            let folded = unseen + i64::try_from(over).unwrap_or(0);
            if folded > 0 {
                let last = match over {
                    0 => due.before_recent.unwrap_or(due.first),
                    n => skipped.get(n - 1).copied().unwrap_or(due.first),
                };
                rows.push(Row::Missed {
                    first: due.first,
                    last,
                    count: folded,
                });
            }
            rows.extend(skipped.iter().skip(over).map(|at| Row::Skipped { at: *at }));
            if !late {
                rows.push(Row::Run {
                    at: latest,
                    catch_up: false,
                });
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::schedule::Kind;

    const MINUTE: i64 = 60_000_000;
    const HOUR: i64 = 60 * MINUTE;

    fn hourly() -> Schedule {
        Schedule::parse(Kind::Hourly, "0 * * * *", "UTC").expect("schedule")
    }

    #[test]
    fn one_time_on_time_just_runs() {
        let due = due_times(&hourly(), 10 * HOUR, 10 * HOUR + 5);
        assert_eq!(due.count, 1);
        let rows = plan(&due, CatchUp::RunLatestMissed, 10 * HOUR + 5, 5 * MINUTE);
        assert_eq!(
            rows,
            [Row::Run {
                at: 10 * HOUR,
                catch_up: false
            }]
        );
        let rows = plan(&due, CatchUp::SkipMissed, 10 * HOUR + 5, 5 * MINUTE);
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn after_downtime_the_latest_runs_once_and_the_rest_are_missed() {
        let now = 15 * HOUR + 20 * MINUTE;
        let due = due_times(&hourly(), 10 * HOUR, now);
        assert_eq!(due.count, 6);
        assert_eq!(due.latest(), 15 * HOUR);
        let rows = plan(&due, CatchUp::RunLatestMissed, now, 5 * MINUTE);
        assert_eq!(
            rows,
            [
                Row::Missed {
                    first: 10 * HOUR,
                    last: 14 * HOUR,
                    count: 5
                },
                Row::Run {
                    at: 15 * HOUR,
                    catch_up: true
                }
            ]
        );
    }

    #[test]
    fn skip_missed_skips_every_late_time_and_runs_none() {
        let now = 12 * HOUR + 20 * MINUTE;
        let due = due_times(&hourly(), 10 * HOUR, now);
        let rows = plan(&due, CatchUp::SkipMissed, now, 5 * MINUTE);
        assert_eq!(
            rows,
            [
                Row::Skipped { at: 10 * HOUR },
                Row::Skipped { at: 11 * HOUR },
                Row::Skipped { at: 12 * HOUR }
            ]
        );
        // The latest still on time runs; the earlier ones are skipped.
        let now = 12 * HOUR + MINUTE;
        let due = due_times(&hourly(), 10 * HOUR, now);
        let rows = plan(&due, CatchUp::SkipMissed, now, 5 * MINUTE);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[2],
            Row::Run {
                at: 12 * HOUR,
                catch_up: false
            }
        );
    }

    #[test]
    fn a_long_outage_folds_old_skips_and_never_stops_counting() {
        let minutely = Schedule::parse(Kind::Cron, "* * * * *", "UTC").expect("schedule");
        let now = 3_000 * MINUTE + 30_000_000;
        let due = due_times(&minutely, MINUTE, now);
        assert_eq!(due.count, 3_000);
        let rows = plan(&due, CatchUp::SkipMissed, now, 10_000_000);
        assert_eq!(rows.len(), MAX_SKIPPED_ROWS + 1);
        assert_eq!(
            rows[0],
            Row::Missed {
                first: MINUTE,
                last: 2_000 * MINUTE,
                count: 2_000
            }
        );
        assert_eq!(rows.last(), Some(&Row::Skipped { at: 3_000 * MINUTE }));
        // On time, the latest runs and the thousand before it are skipped.
        let on_time = 3_000 * MINUTE + 1;
        let rows = plan(&due, CatchUp::SkipMissed, on_time, 5 * MINUTE);
        assert_eq!(
            rows[0],
            Row::Missed {
                first: MINUTE,
                last: 1_999 * MINUTE,
                count: 1_999
            }
        );
        assert_eq!(rows.len(), MAX_SKIPPED_ROWS + 2);
        let rows = plan(&due, CatchUp::RunLatestMissed, now, 5 * MINUTE);
        assert_eq!(
            rows,
            [
                Row::Missed {
                    first: MINUTE,
                    last: 2_999 * MINUTE,
                    count: 2_999
                },
                Row::Run {
                    at: 3_000 * MINUTE,
                    catch_up: true
                }
            ]
        );
    }

    #[test]
    fn nothing_is_due_before_the_first_time() {
        let due = due_times(&hourly(), 10 * HOUR, 10 * HOUR - 1);
        assert_eq!(due.count, 0);
        assert!(plan(&due, CatchUp::RunLatestMissed, 10 * HOUR - 1, MINUTE).is_empty());
    }
}
