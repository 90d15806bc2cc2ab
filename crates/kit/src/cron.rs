//! Five-field cron, read one way by every service (DESIGN.md,
//! "Automations"): minutes, hours, day of month, month, day of week, and a
//! schedule must fire at all. A cron that can never fire (an empty list item,
//! the 30th of February) is refused when it is written: searching for its
//! next fire would run on to the parser's year 5000, for every search.

use chrono::{Datelike, NaiveDate};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The days searched for one that matches: eight years hold two of every
/// leap cycle's Februaries and every weekday of every date.
const SEARCH_DAYS: u32 = 8 * 366;

/// `expression` read as five-field cron, or why not, in words.
pub fn parse(expression: &str) -> Result<Cron, String> {
    if expression
        .split_whitespace()
        .any(|field| field.split(',').any(str::is_empty))
    {
        return Err("a list has an empty item (two commas, or one at an end)".into());
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| e.to_string())?;
    if !fires_at_all(&cron) {
        return Err("it never fires: no day, hour and minute match all of its fields".into());
    }
    Ok(cron)
}

/// Whether some minute of some hour of some day matches, over
/// [`SEARCH_DAYS`] days from a leap year's first.
fn fires_at_all(cron: &Cron) -> bool {
    let pattern = &cron.pattern;
    let any_hour = (0..24).any(|h| pattern.hour_match(h).unwrap_or(false));
    let any_minute = (0..60).any(|m| pattern.minute_match(m).unwrap_or(false));
    if !(any_hour && any_minute) {
        return false;
    }
    let Some(first) = NaiveDate::from_ymd_opt(2024, 1, 1) else {
        return false;
    };
    first.iter_days().take(SEARCH_DAYS as usize).any(|day| {
        pattern.month_match(day.month()).unwrap_or(false)
            && pattern
                .day_match(
                    day.year(),
                    day.month(),
                    day.day(),
                    croner::Weekday::from_days_from_sunday(day.weekday().num_days_from_sunday()),
                )
                .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_schedules_parse() {
        for cron in [
            "*/5 * * * *",
            "0 8 * * 1",
            "30 2 29 2 *",
            "0 0 L * *",
            "0 9 * * 1-5",
        ] {
            assert!(parse(cron).is_ok(), "{cron}");
        }
    }

    #[test]
    fn six_fields_and_bad_values_are_refused() {
        assert!(parse("0 0 8 * * *").is_err());
        assert!(parse("61 * * * *").is_err());
    }

    /// Found by the `cron_schedule` fuzz target: each search for the next
    /// fire of these ran on for seconds.
    #[test]
    fn a_cron_that_never_fires_is_refused() {
        let empty = parse(", 2 * * *").unwrap_err();
        assert!(empty.contains("empty item"), "{empty}");
        assert!(parse("1,,2 * * * *").is_err());
        let never = parse("0 0 30 2 *").unwrap_err();
        assert!(never.contains("never fires"), "{never}");
        assert!(parse("0 0 31 4,6,9,11 *").is_err());
    }
}
