//! Reload events: every step of a reload (started, config changed, build started/done/
//! failed, successor spawned, ready, predecessor stopping, stopped or killed, reload done
//! or failed) is an event. On the console it is a human line (`hotrun: ...`), or a JSON
//! object with `--log-format json`; clients of `hotrun events` (and a waiting `hotrun
//! reload`) get each as a JSON line. A follower that does not keep up loses events rather
//! than slowing the runner.

use tokio::sync::mpsc;

use super::Supervisor;
use crate::control::protocol::{ReloadEvent, ReloadStep};
use crate::logs;

impl Supervisor {
    /// Emits `step` of a reload of app `a` (and `instance`), said as `message`.
    pub(super) fn emit(
        &mut self,
        a: Option<usize>,
        instance: Option<u32>,
        step: ReloadStep,
        message: String,
    ) {
        let event = ReloadEvent {
            time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            step,
            app: a.map(|a| self.apps[a].plan.name.clone()),
            instance,
            stream: "hotrun".into(),
            message,
        };
        let line = match serde_json::to_string(&event) {
            Ok(json) => format!("{json}\n"),
            Err(_) => return,
        };
        if logs::json() {
            logs::stdio::write(logs::stdio::Fd::Err, line.as_bytes());
        } else {
            self.logs.say(&event.message);
        }
        self.event_followers.retain(|tx| {
            !matches!(
                tx.try_send(line.clone()),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }
}
