//! Schedules: the builder's five-field cron and IANA zone, read by the
//! registry when a version is deployed and by the scheduler when it fires.
//! Input: `kind\ncron\nzone\nafter_secs` (text, missing lines empty).
//! Whatever the registry accepts, the scheduler must be able to fire, and
//! fires come out strictly after the start and in order.
#![no_main]

use agentshare_scheduler::schedule::{Kind, Schedule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(4, '\n');
    let kind = Kind::parse(lines.next().unwrap_or_default()).unwrap_or(Kind::Cron);
    let cron = lines.next().unwrap_or_default();
    let zone = lines.next().unwrap_or_default();
    let after_secs: i64 = lines.next().unwrap_or_default().trim().parse().unwrap_or(0);

    let deployable = agentshare_registry::parse_cron(cron).is_ok();
    // The scheduler reads what registry stored, trimmed (of_automation).
    if deployable {
        assert!(
            Schedule::parse(Kind::Cron, cron.trim(), "UTC").is_ok(),
            "registry deploys a cron the scheduler cannot read"
        );
    }
    let Ok(schedule) = Schedule::parse(kind, cron, zone) else {
        return;
    };
    let _ = schedule.description();
    let after = after_secs.saturating_mul(1_000_000);
    let fires = schedule.fires_after(after, 3);
    let mut last = after;
    for fire in &fires {
        assert!(fire.at_micros > last, "fires in order, after the start");
        last = fire.at_micros;
    }
    if let Some(first) = fires.first() {
        assert_eq!(schedule.next_after(after).as_ref(), Some(first));
    }
});
