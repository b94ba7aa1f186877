//! `hotrun config`, `hotrun init` and `hotrun startup systemd`: what the file says, a new
//! file, a boot unit.

use super::{load, options};
use crate::cli::Global;
use crate::config::{self, LoadOptions};
use crate::{exit, logs};

/// `hotrun config`.
pub fn show_config(global: &Global, json: bool, show_secrets: bool) -> i32 {
    let mut loaded = match load(global) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if !show_secrets {
        config::mask_secrets(&mut loaded.plan);
    }
    if json {
        let text =
            serde_json::to_string_pretty(&loaded.plan.to_json()).expect("a plan always serializes");
        println!("{text}");
    } else {
        println!("{}", config::render_human(&loaded.plan).trim_end());
    }
    exit::OK
}

/// `hotrun init`: a commented ecosystem.config.js for the current folder.
pub fn init(global: &Global) -> i32 {
    let opts = match options(global) {
        Ok(o) => o,
        Err(code) => return code,
    };
    if let Ok((existing, _, _)) = config::find(&LoadOptions {
        config: None,
        ..opts.clone()
    }) {
        logs::say(&format!(
            "{} already exists; hotrun init never overwrites an ecosystem file",
            existing.display()
        ));
        return exit::FAILURE;
    }
    let target = global
        .config
        .clone()
        .unwrap_or_else(|| opts.cwd.join("ecosystem.config.js"));
    let found = crate::init::inspect(&opts.cwd);
    let write = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, crate::init::render(&found).as_bytes())
        });
    match write {
        Ok(()) => {
            println!(
                "wrote {} (script: {}; {})",
                target.display(),
                found.script,
                found.why
            );
            exit::OK
        }
        Err(e) => {
            logs::say(&format!("cannot write {}: {e}", target.display()));
            exit::FAILURE
        }
    }
}

/// `hotrun startup systemd [--write]`: the unit for this ecosystem file (see `startup`).
pub fn startup_systemd(global: &Global, write: bool) -> i32 {
    let loaded = match load(global) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let plan = &loaded.plan;
    let longest_stop = plan
        .apps
        .iter()
        .map(|a| a.kill_timeout + a.drain_delay)
        .max()
        .unwrap_or_default();
    let hotrun = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            logs::say(&format!("cannot tell where hotrun's executable is: {e}"));
            return exit::FAILURE;
        }
    };
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name);
    let unit = crate::startup::Unit {
        hotrun,
        config: plan.config.clone(),
        profile: plan.profile.clone(),
        longest_stop,
        user,
        path: std::env::var("PATH").ok(),
    };
    let text = unit.text();
    if !write {
        print!("{text}");
        return exit::OK;
    }
    let name = crate::startup::unit_name(&plan.config);
    let target = std::path::Path::new("/etc/systemd/system").join(&name);
    match std::fs::write(&target, &text) {
        Ok(()) => {
            logs::say(&format!(
                "wrote {}; now: systemctl daemon-reload && systemctl enable --now {name}",
                target.display()
            ));
            exit::OK
        }
        Err(e) => {
            logs::say(&format!(
                "cannot write {}: {e} (run it as root: sudo hotrun startup systemd --write, or print the unit without --write)",
                target.display()
            ));
            exit::FAILURE
        }
    }
}
