//! Reload events: every step of a reload (started, config changed, build started/done/
//! failed, successor spawned, ready, predecessor stopping, stopped or killed, reload done
//! or failed) is an event. On the console it is a human line (`hotrun: ...`), or a JSON
//! object with `--log-format json`; clients of `hotrun events` (and a waiting `hotrun
//! reload`) get each as a JSON line. A follower that does not keep up loses events rather
//! than slowing the runner.

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::Supervisor;
use crate::logs;

impl Supervisor {
    /// Emits event `kind` about app `a` (and `instance`), with `fields`, said as `message`.
    pub(super) fn emit(
        &mut self,
        a: Option<usize>,
        instance: Option<u32>,
        kind: &str,
        fields: Value,
        message: String,
    ) {
        let mut record = Map::new();
        record.insert(
            "time".into(),
            json!(chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)),
        );
        record.insert("event".into(), json!(kind));
        record.insert(
            "app".into(),
            json!(a.map(|a| self.apps[a].plan.name.clone())),
        );
        record.insert("instance".into(), json!(instance));
        record.insert("stream".into(), json!("hotrun"));
        if let Value::Object(extra) = fields {
            record.extend(extra);
        }
        record.insert("message".into(), json!(message));
        let line = format!("{}\n", Value::Object(record));
        if logs::json() {
            logs::stdio::write(logs::stdio::Fd::Err, line.as_bytes());
        } else {
            self.logs.say(&message);
        }
        self.event_followers.retain(|tx| {
            !matches!(
                tx.try_send(line.clone()),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }
}
