//! `cron_restart` (PM2's key, alias `cron`): a ready-gated rolling reload at each time the
//! expression names, so a scheduled refresh has no downtime (PM2 restarts). The
//! expression is PM2's: croner's syntax (PM2 uses croner in JavaScript; this is its Rust
//! port), 5 fields or 6 with seconds first, in local time. Pure but for the clock.

use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// Parses a `cron_restart` expression; the error says what is wrong with it.
pub fn parse(expression: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| e.to_string())
}

/// When an app's scheduled reload next runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextRun {
    /// On the event loop's clock.
    pub at: Instant,
    /// The same on the wall clock, for `hotrun status`.
    pub wall: DateTime<Local>,
}

/// The first time after `wall` (which is `now` on the loop's clock) that `cron` names.
pub fn next_run(cron: &Cron, now: Instant, wall: DateTime<Local>) -> Option<NextRun> {
    let next = cron.find_next_occurrence(&wall, false).ok()?;
    let wait = (next - wall).to_std().unwrap_or(Duration::ZERO);
    Some(NextRun {
        at: now + wait,
        wall: next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn expressions_as_pm2_writes_them() {
        let wall = Local.with_ymd_and_hms(2026, 12, 3, 12, 0, 30).unwrap();
        let now = Instant::now();
        // (expression, seconds until the next run)
        let table = [
            ("* * * * * *", 1),
            ("*/10 * * * * *", 10),
            ("0 * * * *", 59 * 60 + 30),
            ("* * * * *", 30),
            ("0 3 * * *", 15 * 3600 - 30),
            ("@hourly", 59 * 60 + 30),
        ];
        for (expression, secs) in table {
            let cron = parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
            let next = next_run(&cron, now, wall).unwrap();
            assert_eq!(next.at - now, Duration::from_secs(secs), "{expression}");
            assert_eq!(
                (next.wall - wall).num_seconds(),
                secs as i64,
                "{expression}"
            );
        }
    }

    #[test]
    fn a_bad_expression_says_why() {
        for bad in ["every day", "61 * * * *", "* * *", ""] {
            assert!(parse(bad).is_err(), "{bad:?} parses");
        }
    }
}
