//! Giving a slot back to its old instance: a reload's successor that took its slot and
//! died before the reload was done, or a canary that failed during its hold; and letting
//! the old instances parked for a canary go once the reload is over.

use std::time::Instant;

use super::rollout::Input;
use super::slot::{Input as SlotInput, Phase};
use super::Supervisor;
use crate::process::reaper::Exit;

impl Supervisor {
    /// The successor that took slot `s` exited before the reload was done. The reload
    /// fails (no further slot is traded for the new version). If the old instance has not
    /// been asked to stop yet, it serves again and the dead successor's leftovers are
    /// killed; otherwise the slot restarts as after any exit.
    pub(super) fn promoted_exited(&mut self, a: usize, s: usize, exit: Exit, now: Instant) {
        let label = self.label(a, s);
        let slot = &mut self.apps[a].slots[s];
        let waiting = slot.retiring.iter().position(|p| {
            matches!(
                p,
                Phase::Draining {
                    ready_by: Some(_),
                    ..
                } | Phase::Parked { .. }
            )
        });
        let (Some(i), Some(new_run)) = (waiting, slot.phase.run().copied()) else {
            // Reported first, while the dead run's output is still at hand.
            self.rollout_input(a, Input::Exited { slot: s, exit }, now);
            return self.apply(a, s, SlotInput::Exited(exit), now);
        };
        let old = slot.retiring.remove(i);
        let mut scratch = Default::default();
        let app = &mut self.apps[a];
        let (back, _) = super::slot::step(old, SlotInput::Resume, now, &app.settings, &mut scratch);
        let old_run = back.run().copied().expect("a draining phase has a run");
        let slot = &mut app.slots[s];
        slot.phase = back;
        // The reload of this slot is undone.
        slot.reloads = slot.reloads.saturating_sub(1);
        if let Some(io) = self.runs.get(&old_run.serial) {
            slot.lane = io.lane();
        }
        let up = now.saturating_duration_since(new_run.started).as_millis();
        self.logs.say(&format!(
            "{label} new pid {} exited ({exit}) {up} ms after it took the slot; old pid {} (not asked to stop yet) serves again",
            new_run.pid, old_run.pid
        ));
        self.kill_successor(a, new_run, now);
        self.sync_live_sockets();
        self.rollout_input(a, Input::Exited { slot: s, exit }, now);
    }

    /// The parked old instances of app `a` (of slot `only`, or all) drain and stop: their
    /// canary passed, or the rollout ended.
    pub(super) fn release_parked(&mut self, a: usize, only: Option<usize>, now: Instant) {
        for s in 0..self.apps[a].slots.len() {
            if only.is_some_and(|o| o != s) {
                continue;
            }
            while let Some(i) = self.apps[a].slots[s]
                .retiring
                .iter()
                .position(|p| matches!(p, Phase::Parked { .. }))
            {
                self.apply_retiring(a, s, i, SlotInput::Drain, now);
            }
        }
    }

    /// The canary of slot `s` fails during its hold: its parked old instance serves
    /// again and the canary stops. Returns whether there was one to go back to.
    pub(super) fn roll_back_canary(&mut self, a: usize, s: usize, now: Instant) -> bool {
        let label = self.label(a, s);
        let slot = &mut self.apps[a].slots[s];
        let Some(i) = slot
            .retiring
            .iter()
            .position(|p| matches!(p, Phase::Parked { .. }))
        else {
            return false;
        };
        let Some(canary) = slot.phase.run().copied() else {
            return false;
        };
        let parked = slot.retiring.remove(i);
        let app = &mut self.apps[a];
        let mut scratch = Default::default();
        let (back, _) =
            super::slot::step(parked, SlotInput::Resume, now, &app.settings, &mut scratch);
        let old_run = back.run().copied().expect("a parked phase has a run");
        let slot = &mut app.slots[s];
        let current = std::mem::replace(&mut slot.phase, back);
        slot.reloads = slot.reloads.saturating_sub(1);
        if let Some(io) = self.runs.get(&old_run.serial) {
            self.apps[a].slots[s].lane = io.lane();
        }
        self.logs.say(&format!(
            "{label} canary pid {} rolled back: old pid {} serves again",
            canary.pid, old_run.pid
        ));
        let app = &mut self.apps[a];
        let (stopping, actions) =
            super::slot::step(current, SlotInput::Stop, now, &app.settings, &mut scratch);
        app.slots[s].retiring.push(stopping);
        self.sync_live_sockets();
        for action in actions {
            self.act(a, s, Some(canary), action, now);
        }
        true
    }
}
