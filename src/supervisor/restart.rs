//! What happens after an instance exits on its own: restart (after which delay), stop, or
//! give up. Pure; tested by tables.
//!
//! PM2's rules, with one change: in PM2 only runs shorter than `min_uptime` inside a time
//! window count towards `max_restarts`, so an app with a restart delay crash-loops forever.
//! Here every run shorter than `min_uptime` counts, and `max_restarts` of them in a row end
//! the instance as errored.

use std::time::Duration;

use crate::plan::AppPlan;
use crate::process::reaper::Exit;

/// The cap of the exponential backoff, as PM2.
pub const BACKOFF_CAP: Duration = Duration::from_millis(15_000);
/// After this long up, the backoff starts again from its first value, as PM2.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

/// The app's restart settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub autorestart: bool,
    pub max_restarts: u32,
    pub min_uptime: Duration,
    pub restart_delay: Duration,
    pub exp_backoff: Option<Duration>,
    pub stop_exit_codes: Vec<i32>,
}

impl Policy {
    pub fn of(app: &AppPlan) -> Policy {
        Policy {
            autorestart: app.autorestart,
            max_restarts: app.max_restarts,
            min_uptime: app.min_uptime,
            restart_delay: app.restart_delay,
            exp_backoff: app.exp_backoff_restart_delay,
            stop_exit_codes: app.stop_exit_codes.clone(),
        }
    }
}

/// What one instance slot remembers across runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Restarts after an exit (what `status` shows).
    pub restarts: u32,
    /// Runs in a row shorter than `min_uptime`.
    pub short_runs: u32,
    /// The last delay of the exponential backoff.
    pub backoff: Option<Duration>,
}

/// The verdict on an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start again after this delay.
    Restart(Duration),
    /// Leave it stopped: `autorestart: false` or an exit code in `stop_exit_codes`.
    Stop,
    /// `max_restarts` short runs in a row: give up.
    Errored,
}

/// Decides what follows an exit after `uptime`, and updates the slot's history.
pub fn decide(policy: &Policy, history: &mut History, exit: Exit, uptime: Duration) -> Decision {
    if !policy.autorestart {
        return Decision::Stop;
    }
    if let Exit::Code(code) = exit {
        if policy.stop_exit_codes.contains(&code) {
            return Decision::Stop;
        }
    }
    if uptime < policy.min_uptime {
        history.short_runs += 1;
    } else {
        history.short_runs = 0;
    }
    if uptime >= BACKOFF_RESET_AFTER {
        history.backoff = None;
    }
    if history.short_runs > 0 && history.short_runs >= policy.max_restarts {
        return Decision::Errored;
    }
    let delay = match policy.exp_backoff {
        Some(first) => {
            let next = match history.backoff {
                None => first,
                Some(prev) => {
                    let grown = Duration::from_millis((prev.as_millis() as u64 * 3) / 2);
                    grown.min(BACKOFF_CAP)
                }
            };
            history.backoff = Some(next);
            next
        }
        None => policy.restart_delay,
    };
    history.restarts += 1;
    Decision::Restart(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> Policy {
        Policy {
            autorestart: true,
            max_restarts: 3,
            min_uptime: ms(1000),
            restart_delay: ms(0),
            exp_backoff: None,
            stop_exit_codes: vec![],
        }
    }

    #[test]
    fn verdicts() {
        let plain = policy();
        let no_auto = Policy {
            autorestart: false,
            ..policy()
        };
        let stop_codes = Policy {
            stop_exit_codes: vec![0, 3],
            ..policy()
        };
        let delayed = Policy {
            restart_delay: ms(250),
            ..policy()
        };
        // (policy, exit, uptime, expected)
        let table: Vec<(&Policy, Exit, Duration, Decision)> = vec![
            (&plain, Exit::Code(1), ms(5000), Decision::Restart(ms(0))),
            (&no_auto, Exit::Code(1), ms(5000), Decision::Stop),
            (&stop_codes, Exit::Code(3), ms(10), Decision::Stop),
            (
                &stop_codes,
                Exit::Code(1),
                ms(5000),
                Decision::Restart(ms(0)),
            ),
            (
                &stop_codes,
                Exit::Signal(nix::sys::signal::Signal::SIGKILL),
                ms(5000),
                Decision::Restart(ms(0)),
            ),
            (
                &delayed,
                Exit::Code(0),
                ms(5000),
                Decision::Restart(ms(250)),
            ),
        ];
        for (i, (p, exit, up, want)) in table.into_iter().enumerate() {
            let mut h = History::default();
            assert_eq!(decide(p, &mut h, exit, up), want, "row {i}");
        }
    }

    #[test]
    fn short_runs_in_a_row_end_errored() {
        let p = policy();
        let mut h = History::default();
        assert_eq!(
            decide(&p, &mut h, Exit::Code(1), ms(10)),
            Decision::Restart(ms(0))
        );
        assert_eq!(
            decide(&p, &mut h, Exit::Code(1), ms(10)),
            Decision::Restart(ms(0))
        );
        assert_eq!(decide(&p, &mut h, Exit::Code(1), ms(10)), Decision::Errored);
        assert_eq!(h.restarts, 2);
    }

    #[test]
    fn a_long_run_resets_the_short_run_count() {
        let p = policy();
        let mut h = History::default();
        decide(&p, &mut h, Exit::Code(1), ms(10));
        decide(&p, &mut h, Exit::Code(1), ms(10));
        assert_eq!(
            decide(&p, &mut h, Exit::Code(1), ms(2000)),
            Decision::Restart(ms(0))
        );
        assert_eq!(h.short_runs, 0);
        assert_eq!(
            decide(&p, &mut h, Exit::Code(1), ms(10)),
            Decision::Restart(ms(0))
        );
    }

    #[test]
    fn max_restarts_zero_gives_up_at_the_first_short_run() {
        let p = Policy {
            max_restarts: 0,
            ..policy()
        };
        let mut h = History::default();
        assert_eq!(decide(&p, &mut h, Exit::Code(1), ms(10)), Decision::Errored);
    }

    #[test]
    fn exponential_backoff_grows_by_half_up_to_the_cap_and_resets() {
        let p = Policy {
            exp_backoff: Some(ms(100)),
            max_restarts: 100,
            ..policy()
        };
        let mut h = History::default();
        let delays: Vec<Decision> = (0..4)
            .map(|_| decide(&p, &mut h, Exit::Code(1), ms(10)))
            .collect();
        assert_eq!(
            delays,
            vec![
                Decision::Restart(ms(100)),
                Decision::Restart(ms(150)),
                Decision::Restart(ms(225)),
                Decision::Restart(ms(337)),
            ]
        );
        h.backoff = Some(ms(14_000));
        assert_eq!(
            decide(&p, &mut h, Exit::Code(1), ms(10)),
            Decision::Restart(BACKOFF_CAP)
        );
        assert_eq!(
            decide(&p, &mut h, Exit::Code(1), ms(31_000)),
            Decision::Restart(ms(100))
        );
    }
}
