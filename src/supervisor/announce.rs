//! A reload's end told: its event (done, failed, abandoned), the answer to whoever waits
//! for it, and the reload folded behind it started. A reload failed by an instance that
//! died is told once that instance's output has been read to its end, so that its reason
//! quotes the last lines it wrote (the reaper can report an exit before the pipe reader
//! has read what was written just before it); everything else about the end (the slots,
//! the sockets) has happened already.

use std::time::{Duration, Instant};

use super::runs::StderrTail;
use super::Supervisor;
use crate::control::protocol::ReloadStep;

/// A failure waits for its instance's output while lines keep coming at most this far
/// apart (a descendant that outlives it may keep the pipes open)...
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// ...and this long at most.
const OUTPUT_HOLD: Duration = Duration::from_secs(2);

/// How a reload of app `app` ended, to be told.
#[derive(Debug)]
pub(super) struct End {
    pub app: usize,
    pub failed: Option<Failed>,
}

/// A failed reload: its message without the instance's last lines, for the event.
#[derive(Debug)]
pub(super) struct Failed {
    pub message: String,
    pub instance: Option<u32>,
    pub step: ReloadStep,
    /// The run that died (its stderr is quoted), if an instance failed it.
    pub run: Option<u64>,
}

/// A failed reload waiting for its instance's last output.
#[derive(Debug)]
pub(super) struct Unannounced {
    end: End,
    run: u64,
    tail: StderrTail,
    since: Instant,
    /// Told then at the latest (later as lines come, up to `OUTPUT_HOLD`).
    pub(super) until: Instant,
}

impl Supervisor {
    /// Tells how a reload ended: now, or once the dead instance's output is read.
    pub(super) fn end_reload(&mut self, end: End, now: Instant) {
        let run = end.failed.as_ref().and_then(|f| f.run);
        let tail = run
            .and_then(|serial| self.runs.get(&serial))
            .map(|io| io.stderr_tail().clone())
            .unwrap_or_default();
        match run {
            Some(run) if self.run_pipes.get(&run).is_some_and(|&n| n > 0) => {
                self.unannounced.push(Unannounced {
                    end,
                    run,
                    tail,
                    since: now,
                    until: now + OUTPUT_GRACE,
                });
            }
            _ => self.announce(end, tail),
        }
    }

    /// Every output pipe of run `serial` is read to its end: a failure that waited for
    /// them is told.
    pub(super) fn output_ended(&mut self, serial: u64) {
        self.announce_where(|u| u.run == serial);
    }

    /// A stderr line of run `serial`: quoted by a failure that waits for it.
    pub(super) fn stderr_of_unannounced(&mut self, serial: u64, line: &[u8], now: Instant) {
        for u in self.unannounced.iter_mut().filter(|u| u.run == serial) {
            u.tail.push(line);
            u.until = (now + OUTPUT_GRACE).min(u.since + OUTPUT_HOLD);
        }
    }

    /// Failures whose instance's output went quiet without ending (see `OUTPUT_GRACE`).
    pub(super) fn announce_due(&mut self, now: Instant) {
        self.announce_where(|u| u.until <= now);
    }

    /// Every failure still waiting (hotrun is done).
    pub(super) fn announce_all(&mut self) {
        self.announce_where(|_| true);
    }

    fn announce_where(&mut self, which: impl Fn(&Unannounced) -> bool) {
        let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unannounced)
            .into_iter()
            .partition(|u| which(u));
        self.unannounced = kept;
        for u in due {
            self.announce(u.end, u.tail);
        }
    }

    /// The event, the answers, the next reload.
    fn announce(&mut self, end: End, tail: StderrTail) {
        let a = end.app;
        let name = self.apps[a].plan.name.clone();
        let error = match end.failed {
            None => {
                let message = format!("{name}: reload done, every instance replaced");
                self.emit(Some(a), None, ReloadStep::ReloadDone, message);
                None
            }
            Some(failed) => {
                let mut message = failed.message;
                let tail = tail.lines();
                if !tail.is_empty() {
                    message.push_str(&format!("; its last stderr lines: {}", tail.join(" / ")));
                }
                self.emit(Some(a), failed.instance, failed.step, message.clone());
                Some(message)
            }
        };
        let (waiters, next) = self.apps[a].queue.finish();
        for id in waiters {
            self.answer(id, error.clone());
        }
        self.check.reload_done(&name, error);
        if let Some(trigger) = next {
            if self.shutdown == super::Shutdown::Running {
                self.begin_rollout(a, trigger);
            } else {
                let now = self.fx.now();
                self.abort_rollout(a, "hotrun is stopping", now);
            }
        }
    }
}
