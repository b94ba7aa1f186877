//! `hotrun watch` reads its terminal: each line typed goes to the event loop (`rs` +
//! Enter reloads every app, as in nodemon). A blocking thread reads stdin; it ends with
//! stdin.

use std::io::BufRead;

use tokio::sync::mpsc;

pub(super) fn read_lines(tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
}
