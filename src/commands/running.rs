//! `hotrun`, `hotrun run`, `hotrun check` and `hotrun watch`: load the plan and run it.

use super::{load, options};
use crate::cli::Global;
use crate::config;
use crate::logs;
use crate::supervisor::replan::Source;
use crate::supervisor::{self, Mode, RunOptions};

fn run_options(global: &Global, mode: Mode) -> RunOptions {
    let mut opts = RunOptions::new(mode);
    opts.memory_interval = std::time::Duration::from_millis(global.memory_interval);
    opts.http = global.http.clone().filter(|a| !a.is_empty());
    opts.shutdown_delay = global.shutdown_delay.map(std::time::Duration::from_millis);
    // Reloads read the same file again, with the profile chosen now.
    if let Ok(load) = options(global) {
        if let Ok((path, _, _)) = config::find(&load) {
            let mut load = load;
            load.config = Some(path);
            opts.source = Some(Source {
                opts: load,
                watch_all: false,
                instances: None,
            });
        }
    }
    opts
}

/// `hotrun`, `hotrun run`, `hotrun check`.
pub fn run(global: &Global, mode: Mode) -> i32 {
    match load(global) {
        Ok(loaded) => supervisor::run(loaded.plan, run_options(global, mode)),
        Err(code) => code,
    }
}

/// `hotrun watch`: the same runner, watching every app (its `watch` paths, or its cwd)
/// and the ecosystem file itself.
pub fn watch(global: &Global, instances: Option<u32>, poll: bool) -> i32 {
    let mut plan = match load(global) {
        Ok(loaded) => loaded.plan,
        Err(code) => return code,
    };
    let mut opts = run_options(global, Mode::Serve);
    if let Some(source) = opts.source.as_mut() {
        source.watch_all = true;
        source.instances = instances;
        source.adjust(&mut plan);
    }
    opts.console = true;
    opts.poll = poll.then(|| std::time::Duration::from_millis(100));
    logs::say("watch mode: type rs + Enter to reload every app, Ctrl-C to stop");
    supervisor::run(plan, opts)
}
