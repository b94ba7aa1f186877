//! The shared ports: which sockets an app's instances get (`listen`, `port`, and ports
//! learned from the instances' own `listen()` calls), handing one over the IPC channel,
//! pointing new connections at ready slots only, and whether a replaced instance's accept
//! queue is empty (draining).

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use serde_json::{json, Value};

use super::Supervisor;
use crate::plan::AppPlan;
use crate::process::spawn::FIRST_FD;
use crate::sockets::reuseport::Member;
use crate::sockets::{handle, ListenAddr};

/// Programs whose processes are Node and run hotrun's preload module: only for them does
/// hotrun bind a `port` itself (anything else binds it on its own, as under PM2).
const NODE_LAUNCHERS: &[&str] = &["node", "npm", "npx", "yarn", "pnpm", "next", "nuxt", "nest"];

pub(super) fn node_like(app: &AppPlan) -> bool {
    let base = |s: &str| {
        Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if app.interpreter.as_deref().map(base).as_deref() == Some("node") {
        return true;
    }
    let program =
        if app.command.program == "sh" && app.command.args.first().is_some_and(|a| a == "-c") {
            app.command
                .args
                .get(1)
                .and_then(|c| c.split_whitespace().next())
                .unwrap_or("")
        } else {
            app.command.program.as_str()
        };
    NODE_LAUNCHERS.contains(&base(program).as_str())
}

/// The sockets bound before the first start: `listen`, then `port` for Node apps.
pub(super) fn declared_ports(app: &AppPlan) -> Vec<ListenAddr> {
    let mut ports = app.listen.clone();
    if let Some(port) = app.port.filter(|_| node_like(app)) {
        let addr = ListenAddr { host: None, port };
        if !ports.contains(&addr) {
            ports.push(addr);
        }
    }
    ports
}

/// Makes the app's declared ports hotrun's (`Listeners::claim`), before any instance
/// starts: a port another process holds is an error naming the app and the port.
pub(super) fn claim_declared(
    listeners: &mut crate::sockets::Listeners,
    app: &AppPlan,
) -> Result<Vec<ListenAddr>, String> {
    let ports = declared_ports(app);
    for addr in &ports {
        listeners
            .claim(*addr, &Member::new(&app.name, 0))
            .map_err(|e| format!("{}: cannot listen on {addr}: {}", app.name, bind_error(&e)))?;
    }
    Ok(ports)
}

/// Whether the app's instances will report that they listen (Node apps on a port hotrun
/// shares); other apps are ready after `min_uptime` unless they send READY=1.
pub(super) fn expects_listen(app: &AppPlan, ports: &[ListenAddr]) -> bool {
    node_like(app) && ports.iter().any(|p| !app.listen.contains(p))
}

/// A bind error in the user's words.
pub(super) fn bind_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "the port is already in use by another process".into(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".into()
        }
        _ => e.to_string(),
    }
}

/// `{"host": null|"127.0.0.1", "port": 8888, "fd": 3}` for each shared socket.
pub(super) fn listen_fds_json(ports: &[ListenAddr]) -> String {
    let entries: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "host": p.host.map(|h| h.to_string()),
                "port": p.port,
                "fd": FIRST_FD + i as i32,
            })
        })
        .collect();
    Value::Array(entries).to_string()
}

impl Supervisor {
    /// The preload module asks for the socket of the port the app listens on: bind it
    /// (once for all instances) and send it over the IPC channel.
    pub(super) fn hand_socket(&mut self, serial: u64, msg: &Value) {
        let Some(io) = self.runs.get(&serial) else {
            return;
        };
        let (a, s) = (io.app, io.slot);
        let seq = msg.get("seq").cloned().unwrap_or(Value::Null);
        let port = msg
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok());
        let host = msg.get("host").and_then(Value::as_str);
        let addr = match (port, host.map(str::parse)) {
            (Some(port), None) => ListenAddr { host: None, port },
            (Some(port), Some(Ok(ip))) => ListenAddr {
                host: Some(ip),
                port,
            },
            _ => {
                // A host name hotrun does not resolve: the app listens on its own.
                let reply = json!({"hotrun": "listen-reply", "seq": seq, "fallback": true});
                let _ = self.runs[&serial].send_message(&reply);
                return;
            }
        };
        let label = self.label(a, s);
        let member = io.member.clone();
        let reply = match self.listeners.get_or_bind(addr, &member) {
            Ok(fd) => {
                let fd = fd.as_fd();
                let reply = json!({"hotrun": "listen-reply", "seq": seq, "port": addr.port});
                let sent = handle::send_handle(&self.runs[&serial].ipc, fd, &reply);
                if let Err(e) = sent {
                    self.logs
                        .say(&format!("{label} cannot receive the socket of {addr}: {e}"));
                }
                if let Some(io) = self.runs.get_mut(&serial) {
                    if !io.held.contains(&addr) {
                        io.held.push(addr);
                    }
                }
                let now = self.fx.now();
                self.socket_given(serial, now);
                let app = &mut self.apps[a];
                if !app.ports.contains(&addr) {
                    app.ports.push(addr);
                    app.settings.expect_listen = super::ports::node_like(&app.plan);
                    let name = app.plan.name.clone();
                    self.logs.say(&format!(
                        "{name}: port {addr} is shared by every instance (hotrun holds a socket per instance slot)"
                    ));
                }
                return;
            }
            Err(e) => {
                let why = bind_error(&e);
                self.logs.say(&format!(
                    "{label} cannot listen on port {addr}: {why} (app {})",
                    self.apps[a].plan.name
                ));
                json!({"hotrun": "listen-reply", "seq": seq,
                       "error": format!("port {addr}: {why}"), "code": "EADDRINUSE"})
            }
        };
        let _ = self.runs[&serial].send_message(&reply);
    }

    /// Points each shared port's new connections at the slots whose instance is online
    /// (a slot restarting or scaled away gets none; what is queued on its socket waits
    /// for its next instance), and closes the sockets nobody is to use: those of slots
    /// that will have no instance (errored, scaled away and gone), and those of a port the
    /// app no longer uses once the instances that held it are gone. Their queued
    /// connections are refused, not left to hang, and an app with no slot left refuses
    /// connections until it starts again. Re-attached only when the set changes.
    pub(super) fn sync_live_sockets(&mut self) {
        use super::slot::Phase;
        use std::collections::{BTreeSet, HashMap, HashSet};
        let mut live: HashMap<ListenAddr, Vec<Member>> = HashMap::new();
        // A socket is kept while a process holds it (a successor, a draining instance)
        // or its slot is to have one on a port of its app.
        let mut kept: HashSet<(ListenAddr, Member)> = HashSet::new();
        for io in self.runs.values() {
            for addr in &io.held {
                kept.insert((*addr, io.member.clone()));
            }
        }
        for app in &self.apps {
            for slot in &app.slots {
                if !matches!(slot.phase, Phase::Errored { .. }) {
                    let member = Member::lane(&app.plan.name, slot.id, slot.lane);
                    for addr in &app.ports {
                        kept.insert((*addr, member.clone()));
                    }
                }
                let online = match &slot.phase {
                    Phase::Online { run, .. } if !slot.surplus && !self.failing(run.serial) => {
                        self.runs.get(&run.serial)
                    }
                    _ => None,
                };
                if let Some(io) = online {
                    for addr in &io.held {
                        live.entry(*addr).or_default().push(io.member.clone());
                    }
                }
            }
        }
        // Every port with a socket, the apps' own and those they used to have.
        let addresses: BTreeSet<ListenAddr> = self
            .apps
            .iter()
            .flat_map(|a| a.ports.iter().copied())
            .chain(self.listeners.addresses())
            .collect();
        for addr in addresses {
            let members = live.remove(&addr).unwrap_or_default();
            let gone: Vec<Member> = self
                .listeners
                .members(&addr)
                .into_iter()
                .filter(|m| !kept.contains(&(addr, m.clone())))
                .collect();
            // Each socket to close is closed with the program pointed at live sockets whose
            // index its closing does not move (the last takes its index), then the
            // program is set for the new order.
            for m in &gone {
                if let Err(e) = self.listeners.release(&addr, m, &members) {
                    self.steer_failed(&addr, e);
                }
            }
            self.steer(&addr, &members);
        }
    }

    /// After a reload of app `a`: it uses its declared ports and those its instances hold
    /// now; a port only its old version listened on is dropped, and its sockets close
    /// once no process holds them (connections to it are then refused).
    pub(super) fn forget_unused_ports(&mut self, a: usize) {
        let app = &self.apps[a];
        let declared = declared_ports(&app.plan);
        let held: Vec<ListenAddr> = app
            .slots
            .iter()
            .filter_map(|s| s.phase.run())
            .filter_map(|r| self.runs.get(&r.serial))
            .flat_map(|io| io.held.iter().copied())
            .collect();
        self.apps[a]
            .ports
            .retain(|p| declared.contains(p) || held.contains(p));
        self.sync_live_sockets();
    }

    fn steer(&mut self, addr: &ListenAddr, live: &[Member]) {
        if let Err(e) = self.listeners.set_live(addr, live) {
            self.steer_failed(addr, e);
        }
    }

    fn steer_failed(&mut self, addr: &ListenAddr, e: std::io::Error) {
        if !self.live_error_said {
            self.live_error_said = true;
            self.logs.say(&format!(
                "cannot steer connections on port {addr} to ready instances ({e}); the kernel spreads them over every instance, and replaced instances are stopped without draining"
            ));
        }
    }

    /// Whether app `a`'s replaced instances can be drained: its sockets are hotrun's and
    /// the kernel is told which of them to pick.
    pub(super) fn can_drain(&self, a: usize) -> bool {
        !self.apps[a].ports.is_empty() && !self.live_error_said
    }

    /// The ports run `serial`'s app listens on (none once the run is forgotten).
    pub(super) fn ports_of(&self, serial: u64) -> Vec<u16> {
        self.runs
            .get(&serial)
            .map(|io| self.apps[io.app].ports.iter().map(|a| a.port).collect())
            .unwrap_or_default()
    }

    /// Whether no connection waits in the accept queues of run `serial`'s sockets.
    pub(super) fn queue_empty(&self, serial: u64) -> bool {
        let Some(io) = self.runs.get(&serial) else {
            return true;
        };
        self.apps[io.app].ports.iter().all(|addr| {
            // A socket that cannot be asked counts as empty: draining must not hang.
            self.listeners
                .queued(addr, &io.member)
                .map_or(true, |n| n == 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Command;

    fn app_with(interpreter: Option<&str>, program: &str, args: &[&str]) -> AppPlan {
        let mut plan = crate::supervisor::tests_support::app();
        plan.interpreter = interpreter.map(String::from);
        plan.command = Command {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        plan
    }

    #[test]
    fn node_apps_and_launchers_are_recognised() {
        let table = [
            (Some("node"), "node", vec!["server.js"], true),
            (
                Some("/usr/bin/node"),
                "/usr/bin/node",
                vec!["server.js"],
                true,
            ),
            (None, "/usr/bin/npm", vec!["start"], true),
            (None, "sh", vec!["-c", "next start -p 3000"], true),
            (Some("python3"), "python3", vec!["app.py"], false),
            (None, "/srv/bin/server", vec![], false),
            (None, "sh", vec!["-c", "gunicorn app:app"], false),
        ];
        for (interp, program, args, want) in table {
            assert_eq!(
                node_like(&app_with(interp, program, &args)),
                want,
                "{program} {args:?}"
            );
        }
    }

    #[test]
    fn listen_fds_are_numbered_from_3() {
        let ports = [
            ListenAddr {
                host: None,
                port: 8080,
            },
            ListenAddr {
                host: Some("127.0.0.1".parse().unwrap()),
                port: 9090,
            },
        ];
        assert_eq!(
            listen_fds_json(&ports),
            r#"[{"fd":3,"host":null,"port":8080},{"fd":4,"host":"127.0.0.1","port":9090}]"#
        );
    }
}
