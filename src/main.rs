//! The `hotrun` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

use hotrun::cli::{Cli, CommandKind};
use hotrun::commands;
use hotrun::control::protocol::Request;
use hotrun::process;
use hotrun::supervisor::Mode;

fn main() -> ExitCode {
    // The exec step of instances that take `listen` sockets (see process::spawn).
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(a) if a == "__exec" => return code(process::spawn::exec_with_listen_pid(args)),
        // What `hotrun upgrade` asks a new binary: the newest state format it reads.
        Some(a) if a == "__state-format" => {
            println!("{}", hotrun::upgrade::state::FORMAT);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    hotrun::upgrade::receive();
    let cli = Cli::parse();
    let g = &cli.global;
    hotrun::logs::set_json(g.log_format == hotrun::cli::LogFormat::Json);
    let status = match &cli.command {
        Some(CommandKind::Guard) => process::guard::run(),
        Some(CommandKind::Config { json, show_secrets }) => {
            commands::show_config(g, *json, *show_secrets)
        }
        Some(CommandKind::Run) | None => commands::run(g, Mode::Serve),
        Some(CommandKind::Watch { instances, poll }) => commands::watch(g, *instances, *poll),
        Some(CommandKind::Check { reloads }) => commands::run(g, Mode::Check { reloads: *reloads }),
        Some(CommandKind::Reload {
            apps,
            no_wait,
            dry_run,
            canary,
        }) => commands::reload(g, apps, *no_wait, *dry_run, *canary),
        Some(CommandKind::Restart { apps }) => commands::restart(g, apps),
        Some(CommandKind::Logs { app, lines, follow }) => {
            commands::logs(g, app.clone(), *lines, *follow)
        }
        Some(CommandKind::Init) => commands::init(g),
        Some(CommandKind::Startup { write, .. }) => commands::startup_systemd(g, *write),
        Some(CommandKind::Events) => commands::events(g),
        Some(CommandKind::Upgrade {
            binary,
            refuse_state,
        }) => commands::upgrade(g, binary.clone(), *refuse_state),
        Some(CommandKind::Ls) => commands::ls(),
        Some(CommandKind::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "hotrun", &mut std::io::stdout());
            0
        }
        Some(CommandKind::Stop) => commands::control(g, Request::Stop),
        Some(CommandKind::Status {
            json,
            ready,
            verbose,
        }) if *ready => commands::ready(g, *verbose),
        Some(CommandKind::Status { json, .. }) => commands::status(g, *json),
    };
    code(status)
}

fn code(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}
