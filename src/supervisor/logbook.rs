//! What `hotrun logs` reads: the last lines of every instance's output, kept in memory
//! (bounded), and the clients following new lines. A slow follower loses lines rather
//! than slowing the runner down.

use std::collections::VecDeque;

use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Lines kept for `hotrun logs`.
const KEPT_LINES: usize = 1000;
/// Bytes kept, at most, whatever the number of lines.
const KEPT_BYTES: usize = 1024 * 1024;

struct Follower {
    app: Option<String>,
    tx: mpsc::Sender<String>,
}

#[derive(Default)]
pub(super) struct Logbook {
    recent: VecDeque<Value>,
    bytes: usize,
    followers: Vec<Follower>,
}

impl Logbook {
    /// Records one line of an instance (`label` is its prefix: `web|0`, or `web`).
    pub fn record(
        &mut self,
        app: &str,
        app_index: usize,
        label: &str,
        id: u32,
        stderr: bool,
        text: &[u8],
    ) {
        let message = String::from_utf8_lossy(text);
        let record = json!({
            "time": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            "app": app,
            "app_index": app_index,
            "label": label,
            "instance": id,
            "stream": if stderr { "stderr" } else { "stdout" },
            "message": message,
        });
        if !self.followers.is_empty() {
            let line = format!("{record}\n");
            self.followers.retain(|f| {
                if f.app.as_deref().is_some_and(|a| a != app) {
                    return !f.tx.is_closed();
                }
                !matches!(
                    f.tx.try_send(line.clone()),
                    Err(mpsc::error::TrySendError::Closed(_))
                )
            });
        }
        self.bytes += message.len();
        self.recent.push_back(record);
        while self.recent.len() > KEPT_LINES || self.bytes > KEPT_BYTES {
            match self.recent.pop_front() {
                Some(old) => self.bytes -= old["message"].as_str().map_or(0, str::len),
                None => break,
            }
        }
    }

    /// How many lines of `app` are kept.
    pub fn count(&self, app: &str) -> usize {
        self.recent.iter().filter(|r| r["app"] == app).count()
    }

    /// The last `n` lines (of `app`, or of all), leaving out the apps in `except`.
    pub fn tail(&self, app: Option<&str>, n: usize, except: &[&str]) -> Vec<Value> {
        let mut out: Vec<Value> = self
            .recent
            .iter()
            .rev()
            .filter(|r| app.is_none_or(|a| r["app"] == a))
            .filter(|r| !except.iter().any(|e| r["app"] == *e))
            .take(n)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    pub fn follow(&mut self, app: Option<String>, tx: mpsc::Sender<String>) {
        self.followers.push(Follower { app, tx });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_within_bounds() {
        let mut book = Logbook::default();
        for i in 0..(KEPT_LINES + 10) {
            let app = if i % 2 == 0 { "web" } else { "worker" };
            book.record(app, 0, app, 0, false, format!("line {i}").as_bytes());
        }
        assert_eq!(book.recent.len(), KEPT_LINES);
        let web = book.tail(Some("web"), 3, &[]);
        assert_eq!(book.count("web"), KEPT_LINES / 2);
        assert!(book
            .tail(None, 10, &["web"])
            .iter()
            .all(|r| r["app"] == "worker"));
        let texts: Vec<&str> = web.iter().map(|r| r["message"].as_str().unwrap()).collect();
        assert_eq!(texts, ["line 1004", "line 1006", "line 1008"]);
        let big = vec![b'x'; 600 * 1024];
        book.record("web", 0, "web", 0, false, &big);
        book.record("web", 0, "web", 0, false, &big);
        assert!(book.bytes <= KEPT_BYTES);
    }
}
