//! Output: every line of every instance, prefixed `name|id` (or `name` alone for a
//! single instance), coloured per app on a terminal, timestamped with `log_date_format`,
//! and appended to the app's `out_file`/`error_file`/`log_file`. Each line is written
//! whole with one write, so lines never interleave. hotrun's own messages go to stderr
//! as `hotrun: ...`. With `--log-format json` every line (an instance's or hotrun's) is one
//! JSON object instead: `{"time", "app", "instance", "stream", "message"}`. The console
//! side goes through `stdio`, which never lets an unread console stall the runner.

pub mod date;
pub mod history;
pub mod reader;
pub mod rotate;
pub mod stdio;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use console::{Color, Style};

use crate::plan::{AppPlan, Plan};
use date::DateFormat;

/// `--log-format json` is on.
static JSON: AtomicBool = AtomicBool::new(false);

/// Switches every output line to JSON (`--log-format json`).
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether output lines are JSON.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

fn json_line(app: Option<&str>, instance: Option<u32>, stream: &str, message: &[u8]) -> Vec<u8> {
    let time = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
    let value = serde_json::json!({
        "time": time,
        "app": app,
        "instance": instance,
        "stream": stream,
        "message": String::from_utf8_lossy(message),
    });
    let mut line = serde_json::to_vec(&value).expect("json");
    line.push(b'\n');
    line
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Out,
    Err,
}

/// Colours given to apps in file order.
const PALETTE: [Color; 6] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Green,
    Color::Blue,
    Color::Red,
];

struct AppLog {
    name: String,
    single: bool,
    style: Style,
    date: Option<DateFormat>,
    out_file: Option<PathBuf>,
    error_file: Option<PathBuf>,
    log_file: Option<PathBuf>,
    merge: bool,
    pm_id_base: u32,
    rotation: Option<rotate::Rotation>,
}

impl AppLog {
    /// The file an instance writes for `path`: `path` itself, or its per-instance form.
    fn path_of(&self, path: &Path, id: u32) -> PathBuf {
        if self.merge {
            path.to_path_buf()
        } else {
            instance_path(path, self.pm_id_base + id)
        }
    }
}

/// A file an app's lines go to, for `hotrun logs` to read back: whose lines (`web` or
/// `web|0`), and which stream (None: both, `log_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOfApp {
    pub label: String,
    pub stream: Option<Stream>,
    pub path: PathBuf,
}

/// An open log file, its size, and whether its last write or rotation failed (each said
/// once until it works again).
struct LogFile {
    file: Option<File>,
    size: u64,
    failing: bool,
    rotation_failing: bool,
}

/// Where every line goes.
pub struct LogSink {
    apps: Vec<AppLog>,
    width: usize,
    files: HashMap<PathBuf, LogFile>,
    rotator: rotate::Rotator,
}

/// `out.log` -> `out-3.log`: PM2's per-instance file name.
pub fn instance_path(path: &Path, pm_id: u32) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{pm_id}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{pm_id}"),
    };
    path.with_file_name(name)
}

impl LogSink {
    pub fn new(plan: &Plan) -> LogSink {
        let mut pm_id_base = 0;
        let apps: Vec<AppLog> = plan
            .apps
            .iter()
            .enumerate()
            .map(|(i, app)| {
                let log = AppLog::new(app, i, pm_id_base);
                pm_id_base += app.instances;
                log
            })
            .collect();
        let width = plan
            .apps
            .iter()
            .map(|a| prefix_of(&a.name, a.instances == 1, a.instances.saturating_sub(1)).len())
            .max()
            .unwrap_or(0);
        LogSink {
            apps,
            width,
            files: HashMap::new(),
            rotator: Default::default(),
        }
    }

    /// Sets (or adds, at the end) the app at `index`, after its plan changed.
    pub fn set_app(&mut self, index: usize, app: &AppPlan, pm_id_base: u32) {
        let log = AppLog::new(app, index, pm_id_base);
        if index < self.apps.len() {
            self.apps[index] = log;
        } else {
            self.apps.push(log);
        }
        let id_width = app.instances.saturating_sub(1);
        self.width = self
            .width
            .max(prefix_of(&app.name, app.instances == 1, id_width).len());
    }

    /// One line of an instance's output (without its newline).
    pub fn line(&mut self, app: usize, id: u32, stream: Stream, text: &[u8]) {
        let Some(log) = self.apps.get(app) else {
            return;
        };
        if JSON.load(Ordering::Relaxed) {
            let (name, to_stderr) = (log.name.clone(), stream == Stream::Err);
            let kind = if to_stderr { "stderr" } else { "stdout" };
            let line = json_line(Some(&name), Some(id), kind, text);
            stdio::write(console_fd(stream), &line);
            return self.write_files(app, id, stream, text, None);
        }
        let date = log
            .date
            .as_ref()
            .map(|f| format!("{}: ", f.format(&chrono::Local::now())));
        let date = date.as_deref().unwrap_or("");

        let prefix = prefix_of(&log.name, log.single, id);
        let padded = format!("{prefix:<width$}", width = self.width);
        let mut line = Vec::with_capacity(padded.len() + text.len() + date.len() + 16);
        let to_stderr = stream == Stream::Err;
        let styled = if to_stderr {
            log.style.clone().for_stderr().apply_to(padded)
        } else {
            log.style.clone().for_stdout().apply_to(padded)
        };
        line.extend_from_slice(styled.to_string().as_bytes());
        line.extend_from_slice(b" | ");
        line.extend_from_slice(date.as_bytes());
        line.extend_from_slice(text);
        line.push(b'\n');
        stdio::write(console_fd(stream), &line);

        let date = date.to_string();
        self.write_files(app, id, stream, text, Some(&date));
    }

    /// The files the app at `index` (of `instances` instances) writes: its combined
    /// `log_file` alone when it has one (it holds both streams in order), else its
    /// `out_file` and `error_file`; per instance unless merged.
    pub fn files_of(&self, index: usize, instances: u32) -> Vec<FileOfApp> {
        let Some(log) = self.apps.get(index) else {
            return vec![];
        };
        let streams = match &log.log_file {
            Some(both) => vec![(None, both)],
            None => [
                (Some(Stream::Out), &log.out_file),
                (Some(Stream::Err), &log.error_file),
            ]
            .into_iter()
            .filter_map(|(s, p)| Some((s, p.as_ref()?)))
            .collect(),
        };
        let ids: Vec<Option<u32>> = if log.merge {
            vec![None]
        } else {
            (0..instances).map(Some).collect()
        };
        let mut files = Vec::new();
        for id in ids {
            for (stream, path) in &streams {
                files.push(FileOfApp {
                    label: match id {
                        Some(id) => prefix_of(&log.name, log.single, id),
                        None => log.name.clone(),
                    },
                    stream: *stream,
                    path: log.path_of(path, id.unwrap_or(0)),
                });
            }
        }
        files
    }

    /// A line of an app's `build`, prefixed `name|build` (not written to its log files).
    pub fn build_line(&mut self, app: usize, stream: Stream, text: &[u8]) {
        let Some(log) = self.apps.get(app) else {
            return;
        };
        let to_stderr = stream == Stream::Err;
        let label = format!("{}|build", log.name);
        let line = if JSON.load(Ordering::Relaxed) {
            json_line(Some(&log.name), None, "build", text)
        } else {
            let styled = if to_stderr {
                log.style.clone().for_stderr().apply_to(label)
            } else {
                log.style.clone().for_stdout().apply_to(label)
            };
            let mut line = format!("{styled} | ").into_bytes();
            line.extend_from_slice(text);
            line.push(b'\n');
            line
        };
        stdio::write(console_fd(stream), &line);
    }

    /// Appends the line to the app's log files, if it has any; `date` is its prefix when
    /// already formatted.
    fn write_files(
        &mut self,
        app: usize,
        id: u32,
        stream: Stream,
        text: &[u8],
        date: Option<&str>,
    ) {
        let log = &self.apps[app];
        let to_stderr = stream == Stream::Err;
        let formatted;
        let date = match date {
            Some(d) => d,
            None => {
                formatted = log
                    .date
                    .as_ref()
                    .map(|f| format!("{}: ", f.format(&chrono::Local::now())))
                    .unwrap_or_default();
                &formatted
            }
        };
        let own = if to_stderr {
            &log.error_file
        } else {
            &log.out_file
        };
        let targets: Vec<PathBuf> = [own, &log.log_file]
            .into_iter()
            .flatten()
            .map(|p| log.path_of(p, id))
            .collect();
        if targets.is_empty() {
            return;
        }
        let mut record = Vec::with_capacity(date.len() + text.len() + 1);
        record.extend_from_slice(date.as_bytes());
        record.extend_from_slice(text);
        record.push(b'\n');
        let app_name = log.name.clone();
        let rotation = log.rotation;
        for path in targets {
            self.append(&app_name, path, &record, rotation);
        }
    }

    /// hotrun's own message, on stderr.
    pub fn say(&mut self, msg: &str) {
        say(msg);
    }

    fn append(
        &mut self,
        app: &str,
        path: PathBuf,
        record: &[u8],
        rotation: Option<rotate::Rotation>,
    ) {
        let entry = self.files.entry(path.clone()).or_insert_with(|| LogFile {
            file: None,
            size: 0,
            failing: false,
            rotation_failing: false,
        });
        if let Some(r) = rotation
            .filter(|_| entry.file.is_some())
            .filter(|_| rotate::due(rotation, entry.size, record.len()))
        {
            entry.file = None;
            match self.rotator.rotate(&path, r) {
                Ok(()) => entry.rotation_failing = false,
                Err(e) if !entry.rotation_failing => {
                    entry.rotation_failing = true;
                    say(&format!(
                        "cannot rotate {app}'s log file {}: {e}; writing on to it",
                        path.display()
                    ));
                }
                Err(_) => {}
            }
        }
        if entry.file.is_none() {
            // A folder that does not exist yet is made (0750), as PM2 does.
            if let Some(dir) = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty() && !d.exists())
            {
                use std::os::unix::fs::DirBuilderExt;
                let _ = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(dir);
            }
            match OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&path)
            {
                Ok(f) => {
                    entry.size = f.metadata().map_or(0, |m| m.len());
                    entry.file = Some(f);
                }
                Err(e) => {
                    if !entry.failing {
                        entry.failing = true;
                        say(&format!(
                            "cannot open {app}'s log file {}: {e}; its lines still go to the console",
                            path.display()
                        ));
                    }
                    return;
                }
            }
        }
        let file = entry.file.as_mut().expect("opened above");
        match file.write_all(record) {
            Ok(()) => {
                entry.failing = false;
                entry.size += record.len() as u64;
            }
            Err(e) => {
                if !entry.failing {
                    entry.failing = true;
                    say(&format!(
                        "cannot write {app}'s log file {}: {e}; its lines still go to the console",
                        path.display()
                    ));
                }
            }
        }
    }
}

/// A label (`web|0`) in the colour of the app at `index`, as the runner prints it.
pub fn styled_label(label: &str, index: usize, stderr: bool) -> String {
    let style = Style::new().fg(PALETTE[index % PALETTE.len()]).bold();
    let style = if stderr {
        style.for_stderr()
    } else {
        style.for_stdout()
    };
    style.apply_to(label).to_string()
}

/// Prints `hotrun: msg` on stderr in one write.
pub fn say(msg: &str) {
    let line = if JSON.load(Ordering::Relaxed) {
        json_line(None, None, "hotrun", msg.as_bytes())
    } else {
        format!("hotrun: {msg}\n").into_bytes()
    };
    stdio::write(stdio::Fd::Err, &line);
}

fn console_fd(stream: Stream) -> stdio::Fd {
    match stream {
        Stream::Out => stdio::Fd::Out,
        Stream::Err => stdio::Fd::Err,
    }
}

fn prefix_of(name: &str, single: bool, id: u32) -> String {
    if single {
        name.to_string()
    } else {
        format!("{name}|{id}")
    }
}

impl AppLog {
    fn new(app: &AppPlan, index: usize, pm_id_base: u32) -> AppLog {
        AppLog {
            name: app.name.clone(),
            single: app.instances == 1,
            style: Style::new().fg(PALETTE[index % PALETTE.len()]).bold(),
            date: app.logs.date_format.as_deref().map(DateFormat::new),
            out_file: app.logs.out_file.clone(),
            error_file: app.logs.error_file.clone(),
            log_file: app.logs.log_file.clone(),
            merge: app.logs.merge_logs,
            pm_id_base,
            rotation: app.logs.rotation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_instance_file_names_follow_pm2() {
        let cases = [
            ("/l/out.log", 0, "/l/out-0.log"),
            ("/l/out.log", 12, "/l/out-12.log"),
            ("/l/out", 3, "/l/out-3"),
            ("/l/app.err.txt", 1, "/l/app.err-1.txt"),
        ];
        for (path, id, want) in cases {
            assert_eq!(instance_path(Path::new(path), id), PathBuf::from(want));
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_of("web", true, 0), "web");
        assert_eq!(prefix_of("web", false, 2), "web|2");
    }
}
