//! `hotrun logs`: the recent lines the runner keeps, or, for apps with log files when
//! more lines are asked than it keeps, the files' last lines (across rotated ones); then
//! with `--follow` new lines as they come.

use serde_json::Value;

use super::options;
use crate::cli::Global;
use crate::config;
use crate::control::client;
use crate::control::protocol::{FileStream, LogFile, Request, Response};
use crate::{exit, logs};

/// `hotrun logs [APP] [--lines N] [--follow]`: the same prefixes and colours as the runner.
pub fn logs(global: &Global, app: Option<String>, lines: usize, follow: bool) -> i32 {
    let opts = match options(global) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let path = match config::find(&opts) {
        Ok((path, _, _)) => path,
        Err(e) => {
            logs::say(&e.to_string());
            return e.exit_code();
        }
    };
    let request = Request::Logs { app, lines, follow };
    let (reply, mut more) = match client::open(&path, &request) {
        Ok(r) => r,
        Err(e) => {
            logs::say(&e.to_string());
            return exit::FAILURE;
        }
    };
    let (records, files) = match reply {
        Response::Logs { lines, files } => (lines, files),
        Response::Failed(error) => {
            logs::say(&error);
            return exit::FAILURE;
        }
        _ => (Vec::new(), Vec::new()),
    };
    for file in files {
        print_file(&file, lines);
    }
    for record in records {
        print_record(&record);
    }
    if follow {
        use std::io::BufRead;
        let mut line = String::new();
        while more.read_line(&mut line).unwrap_or(0) > 0 {
            if let Ok(record) = serde_json::from_str::<Value>(&line) {
                print_record(&record);
            }
            line.clear();
        }
    }
    exit::OK
}

fn print_record(record: &Value) {
    use std::io::Write;
    if logs::json() {
        println!("{record}");
        return;
    }
    let stderr = record["stream"] == "stderr";
    let label = record["label"].as_str().unwrap_or("?");
    let index = record["app_index"].as_u64().unwrap_or(0) as usize;
    let line = format!(
        "{} | {}\n",
        logs::styled_label(label, index, stderr),
        record["message"].as_str().unwrap_or("")
    );
    let _ = if stderr {
        std::io::stderr().lock().write_all(line.as_bytes())
    } else {
        std::io::stdout().lock().write_all(line.as_bytes())
    };
}

/// The last `lines` lines of one of an app's log files, continued into its rotated ones,
/// printed as the runner's records are.
fn print_file(file: &LogFile, lines: usize) {
    let read = logs::history::last_lines(&file.path, lines);
    let found = match read {
        Ok(found) => found,
        Err(e) => {
            logs::say(&format!("cannot read {}: {e}", file.path.display()));
            return;
        }
    };
    if !logs::json() {
        logs::say(&format!(
            "{}: last {} line(s) of {}",
            file.label,
            found.len(),
            file.path.display()
        ));
    }
    let stream = match file.stream {
        FileStream::Stderr => "stderr",
        FileStream::Stdout | FileStream::Both => "stdout",
    };
    for line in found {
        print_record(&serde_json::json!({
            "app": file.app,
            "app_index": file.app_index,
            "label": file.label,
            "stream": stream,
            "message": String::from_utf8_lossy(&line),
            "file": file.path,
        }));
    }
}
