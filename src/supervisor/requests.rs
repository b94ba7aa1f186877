//! Requests from the control socket and the console: status, reload, restart, stop, and
//! the preload module's reports from instances without an IPC channel.

use super::slot::{Input, ReadyBy};
use super::{rollout, Supervisor};
use crate::control::protocol::{FileStream, LogFile, Request, Response};
use crate::control::server::Incoming;
use crate::logs::Stream;

impl Supervisor {
    pub(super) fn on_request(&mut self, incoming: Incoming) {
        let Incoming {
            request,
            reply,
            stream,
        } = incoming;
        let response = match request {
            Request::Status => Response::status(self.status()),
            Request::Stop => {
                self.logs.say("stop requested: stopping every instance");
                self.stop_all();
                Response::ok("stopping")
            }
            Request::Reload {
                apps,
                wait,
                dry_run,
                canary,
            } => match self.select_apps(&apps) {
                Err(e) => Response::err(e),
                Ok(selected) => {
                    if let Some(ms) = canary.filter(|_| !dry_run) {
                        for &a in &selected {
                            self.apps[a].canary_once = Some(std::time::Duration::from_millis(ms));
                        }
                    }
                    let scope = (!apps.is_empty()).then_some(selected);
                    if dry_run {
                        self.dry_run(scope)
                    } else if wait {
                        if let Some(tx) = stream {
                            self.event_followers.push(tx);
                        }
                        self.reload_apps(scope, rollout::Trigger::Command, Some(reply));
                        return;
                    } else {
                        self.reload_apps(scope, rollout::Trigger::Command, None);
                        Response::ok("reload requested")
                    }
                }
            },
            Request::Upgrade {
                binary,
                refuse_state,
            } => {
                let now = self.fx.now();
                self.ask_upgrade(binary, refuse_state, Some(reply), now);
                return;
            }
            Request::Events => {
                if let Some(tx) = stream {
                    self.event_followers.push(tx);
                }
                Response::ok("following reload events")
            }
            Request::Logs { app, lines, follow } => {
                let selected = match &app {
                    Some(a) => self.select_apps(std::slice::from_ref(a)),
                    None => Ok(self.live_apps()),
                };
                match selected {
                    Err(e) => Response::err(e),
                    Ok(selected) => {
                        let files = self.log_files_to_read(&selected, lines);
                        let from_files: Vec<&str> = files.iter().map(|f| f.app.as_str()).collect();
                        let tail = self.logbook.tail(app.as_deref(), lines, &from_files);
                        if let (true, Some(tx)) = (follow, stream) {
                            self.logbook.follow(app, tx);
                        }
                        Response::lines(tail, files)
                    }
                }
            }
            Request::Restart { .. } if self.shutdown != super::Shutdown::Running => {
                Response::err("hotrun is stopping")
            }
            Request::Restart { apps } => match self.select_apps(&apps) {
                Err(e) => Response::err(e),
                Ok(selected) => {
                    self.restart_apps(&selected);
                    Response::ok("restarting")
                }
            },
            Request::Instance { token, event, .. } => {
                if let Ok(serial) = token.parse::<u64>() {
                    match event.as_str() {
                        "ready" => self.on_ready(serial, ReadyBy::Message),
                        "listening" => self.on_ready(serial, ReadyBy::Listen),
                        _ => {}
                    }
                }
                Response::ok("noted")
            }
        };
        let _ = reply.send(response);
    }

    /// The app indexes named in a request (all when empty), or an error naming the unknown.
    pub(super) fn select_apps(&self, names: &[String]) -> Result<Vec<usize>, String> {
        if names.is_empty() {
            return Ok(self.live_apps());
        }
        names
            .iter()
            .map(|n| {
                self.apps
                    .iter()
                    .position(|a| &a.plan.name == n && !a.removed)
                    .ok_or_else(|| {
                        let known: Vec<&str> = self
                            .apps
                            .iter()
                            .filter(|a| !a.removed)
                            .map(|a| a.plan.name.as_str())
                            .collect();
                        format!("no app named {n} (apps: {})", known.join(", "))
                    })
            })
            .collect()
    }

    /// The log files `hotrun logs` reads back for `lines` lines: those of the apps with
    /// fewer lines in memory than that (their files hold more).
    fn log_files_to_read(&self, apps: &[usize], lines: usize) -> Vec<LogFile> {
        let mut files = Vec::new();
        for &a in apps {
            let plan = &self.apps[a].plan;
            if self.logbook.count(&plan.name) >= lines {
                continue;
            }
            let found = self.logs.files_of(a, plan.instances);
            // Only when the files hold both streams: else the memory's lines of the other
            // stream would be lost.
            let holds = |s: Stream| found.iter().any(|f| f.stream.is_none_or(|x| x == s));
            if !(holds(Stream::Out) && holds(Stream::Err)) {
                continue;
            }
            for f in found {
                files.push(LogFile {
                    app: plan.name.clone(),
                    app_index: a,
                    label: f.label,
                    stream: match f.stream {
                        Some(Stream::Out) => FileStream::Stdout,
                        Some(Stream::Err) => FileStream::Stderr,
                        None => FileStream::Both,
                    },
                    path: f.path,
                });
            }
        }
        files
    }

    /// `hotrun restart`: stop, then start (not zero-downtime, as in PM2).
    pub(super) fn restart_apps(&mut self, apps: &[usize]) {
        if self.shutdown != super::Shutdown::Running {
            return;
        }
        let now = self.fx.now();
        for &a in apps {
            self.logs.say(&format!(
                "{}: restart requested: stop, then start",
                self.apps[a].plan.name
            ));
            for s in 0..self.apps[a].slots.len() {
                if self.apps[a].slots[s].surplus {
                    continue;
                }
                if self.apps[a].slots[s].phase.is_final() {
                    self.apply(a, s, Input::Start, now);
                } else {
                    self.apps[a].slots[s].restart_after_stop = true;
                    self.apply(a, s, Input::Stop, now);
                }
            }
        }
    }

    /// A line typed in `hotrun watch`: `rs` reloads every app (nodemon's habit).
    pub(super) fn on_console(&mut self, line: &str) {
        if line.trim() == "rs" {
            self.logs.say("rs: reloading every app");
            self.reload_apps(None, rollout::Trigger::Console, None);
        }
    }
}
