//! The configuration pipeline: find the ecosystem file, read it (JSON5, YAML, or node for
//! JavaScript that computes), check every key, resolve it into a [`Plan`].
//!
//! [`load`] is the entry point; [`render_human`] prints a plan for `hotrun config`.
//! Modules, in pipeline order: `locate` (discovery), `source` (read + JSON5, JS prefix),
//! `node_eval` (JavaScript through node), `resolve` (file shapes, cross-app checks),
//! `app` + `fields` (one app; `command`: what it runs, `app_env`: its environment),
//! `schema` (known keys), `units` (value parsers), `probe` (readiness_probe), `env` (profiles, env files), `position`
//! (line:column of a key), `yaml` (YAML files), `mask` (hiding secret values), `error`,
//! `show`.

use std::path::PathBuf;

use crate::plan::Plan;

mod app;
mod app_env;
mod command;
pub mod env;
pub mod error;
mod fields;
pub mod locate;
pub mod mask;
pub mod node_eval;
pub mod position;
mod probe;
pub mod resolve;
pub mod schema;
pub mod show;
pub mod source;
pub mod units;
pub mod yaml;

pub use error::{ConfigError, ErrorKind};
pub use mask::mask_secrets;
pub use show::render_human;

/// What the caller asks for.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config`; `None` = discover in `cwd`.
    pub config: Option<PathBuf>,
    /// `--env NAME`.
    pub profile: Option<String>,
    /// `--only APP,APP`; empty = all apps.
    pub only: Vec<String>,
    /// The folder to discover the file in (the process's current directory).
    pub cwd: PathBuf,
}

/// A loaded plan and what the user should be told about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub plan: Plan,
    /// One-line notes for the user: which file was used, "evaluated with node", ...
    pub notes: Vec<String>,
    /// Warnings, each one line, already carrying file:line:column where known.
    pub warnings: Vec<String>,
}

/// The ecosystem file `opts` names, or the one discovered in its folder: the absolute
/// path (the one the runner and its control socket are known by), the absolute cwd, and
/// the note to print when the file was discovered.
pub fn find(opts: &LoadOptions) -> Result<(PathBuf, PathBuf, Option<String>), ConfigError> {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let cwd = locate::absolute(&here, &opts.cwd);
    match &opts.config {
        Some(p) => Ok((locate::absolute(&cwd, p), cwd, None)),
        None => {
            let p = locate::discover(&cwd)?;
            let note = format!("using {}", locate::display(&p, &cwd));
            Ok((p, cwd, Some(note)))
        }
    }
}

/// Finds, reads, checks and resolves the ecosystem file.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let (path, cwd, note) = find(opts)?;
    let mut notes: Vec<String> = note.into_iter().collect();
    let mut warnings = Vec::new();
    let display = locate::display(&path, &cwd);
    let src = source::read(&path, &display, &mut notes)?;
    let origin = position::Origin {
        display,
        text: src.text,
    };
    let profile = opts.profile.as_deref().filter(|p| !p.is_empty());
    let only: Vec<String> = opts
        .only
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let input = resolve::Input {
        origin: &origin,
        config: &path,
        profile,
        only: &only,
        cpus: units::available_cpus(),
    };
    let plan = resolve::resolve(&input, &src.value, &mut warnings)?;
    Ok(Loaded {
        plan,
        notes,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` into a temp folder (with an empty server.js) and loads `config`.
    fn load_in(
        config: &str,
        text: &str,
        profile: Option<&str>,
    ) -> (tempfile::TempDir, Result<Loaded, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.js"), "").unwrap();
        std::fs::write(dir.path().join(config), text).unwrap();
        let opts = LoadOptions {
            config: Some(PathBuf::from(config)),
            profile: profile.map(str::to_string),
            only: Vec::new(),
            cwd: dir.path().to_path_buf(),
        };
        let r = load(&opts);
        (dir, r)
    }

    #[test]
    fn pm2_shapes() {
        for (file, text) in [
            ("a.json5", "{ apps: [{ script: 'server.js' }] }"),
            ("b.json5", "{ pm2: [{ script: 'server.js' }] }"),
            ("c.json5", "[{ script: 'server.js' }]"),
            ("d.json5", "{ script: 'server.js' }"),
            ("e.json5", "{ apps: { script: 'server.js' } }"),
            (
                "f.config.js",
                "module.exports.apps = [{ script: 'server.js' }];",
            ),
            (
                "g.mjs",
                "export default { apps: [{ script: 'server.js' }] };",
            ),
        ] {
            let (dir, r) = load_in(file, text, None);
            let loaded = r.unwrap_or_else(|e| panic!("{file}: {e}"));
            let app = &loaded.plan.apps[0];
            assert_eq!(app.name, "server", "{file}");
            assert_eq!(app.command.program, "node");
            assert_eq!(
                app.command.args,
                [dir.path().join("server.js").display().to_string()]
            );
            assert_eq!(app.kill_signal, nix::sys::signal::Signal::SIGINT);
            assert_eq!(app.instance_var, "NODE_APP_INSTANCE");
            assert!(
                app.logs.merge_logs,
                "PM2's merge_logs default for fork without instances"
            );
        }
    }

    #[test]
    fn defaults_and_conversions() {
        let text = "{ apps: [{ script: 'server.js', args: '--a \"b c\"', node_args: ['--max-old-space-size=512'],
            min_uptime: '5m', kill_signal: 'sigterm', stop_exit_codes: [0, '3'], exp_backoff_restart_delay: 100,
            watch: ['src'], ignore_watch: 'node_modules', time: true, out_file: 'logs/out.log', error_file: 'NULL',
            port: 8080, cwd: '.', instances: 2, exec_mode: 'fork_mode' }] }";
        let (dir, r) = load_in("x.json5", text, None);
        let app = &r.unwrap().plan.apps[0];
        let d = dir.path();
        assert_eq!(app.args, ["--a", "b c"]);
        assert_eq!(app.interpreter_args, ["--max-old-space-size=512"]);
        assert_eq!(
            app.command.args,
            [
                "--max-old-space-size=512".to_string(),
                d.join("server.js").display().to_string(),
                "--a".into(),
                "b c".into()
            ]
        );
        assert_eq!(app.min_uptime.as_millis(), 300_000);
        assert_eq!(app.kill_signal, nix::sys::signal::Signal::SIGTERM);
        assert_eq!(app.stop_exit_codes, [0, 3]);
        assert_eq!(
            app.exp_backoff_restart_delay.map(|d| d.as_millis()),
            Some(100)
        );
        assert_eq!(app.watch, [d.join("src")]);
        assert_eq!(app.ignore_watch, ["node_modules"]);
        assert_eq!(app.logs.date_format.as_deref(), Some("YYYY-MM-DDTHH:mm:ss"));
        assert_eq!(app.logs.out_file, Some(d.join("logs/out.log")));
        assert_eq!(app.logs.error_file, None);
        assert!(!app.logs.merge_logs);
        assert_eq!(app.env["PORT"], "8080");
        assert_eq!(app.port, Some(8080));
        assert_eq!(app.instances, 2);
        assert_eq!(app.exec_mode, crate::plan::ExecMode::Fork);
        assert_eq!(app.listen_timeout.as_millis(), 3000);
        assert_eq!(app.kill_timeout.as_millis(), 1600);
        assert_eq!(app.max_restarts, 16);
    }

    #[test]
    fn shell_script_case() {
        let (_d, r) = load_in(
            "s.json5",
            "{ apps: [{ script: 'npm run start:prod', args: ['x y'] }] }",
            None,
        );
        let app = &r.unwrap().plan.apps[0];
        assert_eq!(app.name, "npm run start:prod");
        assert_eq!(app.interpreter, None);
        assert_eq!(app.command.program, "sh");
        assert_eq!(app.command.args, ["-c", "npm run start:prod", "sh", "x y"]);
    }

    #[test]
    fn odd_inputs_never_panic() {
        for text in [
            "",
            "null",
            "5",
            "'x'",
            "[]",
            "[1]",
            "{}",
            "{ apps: 5 }",
            "{ apps: [null] }",
            "{ apps: {} }",
            "{ apps: [{ script: 5 }] }",
            "{ apps: [{ script: '' }] }",
            "{ apps: [{ script: '.' }] }",
            "{ apps: [{ script: 'server.js', env_production: 5 }] }",
            "{ apps: [{ script: 'server.js', name: '' }] }",
            "{ apps: [{ script: 'server.js', instances: 1e300 }] }",
            "{ apps: [{ script: 'server.js', instances: -1e300 }] }",
            "{ apps: [{ script: 'server.js', max_memory_restart: 99999999999999999999 }] }",
            "{ apps: [{ script: 'server.js', kill_timeout: NaN, port: Infinity }] }",
            "{ apps: [{ script: 'server.js', watch: [1, {}] }] }",
            "{ a: [ }",
            "\u{feff}{ apps: [{ script: 'server.js' }] }",
        ] {
            let (_d, r) = load_in("odd.json5", text, Some("production"));
            if let Err(e) = r {
                assert!(!e.message.is_empty());
                assert!(e.message.starts_with("odd.json5"), "{text}: {e}");
            }
        }
    }
}
