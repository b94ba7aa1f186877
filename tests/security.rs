//! Security: no shell between the ecosystem file and the instance, a control socket only
//! its user may use, no environment value in what hotrun prints, private files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn args_with_shell_metacharacters_arrive_verbatim() {
    let marker = tempfile::tempdir().unwrap();
    let pwned = marker.path().join("pwned");
    let args = [
        format!("$(touch {})", pwned.display()),
        format!("; touch {}", pwned.display()),
        "`id`".to_string(),
        "a b  c".to_string(),
        "it's \"quoted\"".to_string(),
        "*".to_string(),
    ];
    let json_args = serde_json::to_string(&args).unwrap();
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'argv', script: '{}', args: {json_args},
           interpreter_args: ['--no-warnings'] }}] }};\n",
        app("argv.js")
    ));
    let h = Hotrun::start(dir.path(), &[]);
    let line = h.wait_for("argv [");
    let printed = &line[line.find("argv [").unwrap() + 5..];
    let got: Vec<String> = serde_json::from_str(printed).unwrap();
    assert_eq!(got, args);
    assert!(!pwned.exists(), "no shell ran the arguments");
}

#[test]
fn another_user_is_refused_by_the_control_socket() {
    if !nix::unistd::getuid().is_root() {
        return cannot_run("needs root to act as another user");
    }
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path().join("rt");
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'tick', script: '{}' }}] }};\n",
        app("ticker.js")
    ));
    let _h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("HOTRUN_RUNTIME_DIR", &rt),
    );
    let socket = || {
        std::fs::read_dir(&rt)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path().join("control.sock"))
    };
    wait_until("the control socket exists", || {
        socket().is_some_and(|s| s.exists())
    });
    let sock = socket().unwrap();
    // Open the folders and the socket to everyone: only SO_PEERCRED is left to refuse.
    for p in [runtime.path(), rt.as_path(), sock.parent().unwrap()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(HOTRUN)
        .args(["status", "--json"])
        .current_dir(dir.path())
        .env("HOTRUN_RUNTIME_DIR", &rt)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused: the control socket serves its own user only"),
        "{err}"
    );
}

#[test]
fn environment_values_never_appear_in_status_logs_or_masked_config() {
    let secret = "hunter2-very-secret";
    let logs = tempfile::tempdir().unwrap();
    let out_file = logs.path().join("out.log");
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'web', script: '{}', out_file: '{}',
           env: {{ API_TOKEN: '{secret}', DB_PASSWORD: '{secret}', PLAIN: 'visible' }} }}] }};\n",
        app("ticker.js"),
        out_file.display()
    ));
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("tick 3");
    let st = hotrun_cmd(dir.path(), &["status", "--json"]);
    assert!(!String::from_utf8_lossy(&st.stdout).contains(secret));
    // Changing the value and reloading names the key, not the value.
    std::fs::write(
        dir.path().join("ecosystem.config.js"),
        std::fs::read_to_string(dir.path().join("ecosystem.config.js"))
            .unwrap()
            .replace(secret, "another-secret-value"),
    )
    .unwrap();
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
    h.wait_for("web: env API_TOKEN changed, DB_PASSWORD changed");
    let said = h.output();
    assert!(
        !said.contains(secret) && !said.contains("another-secret-value"),
        "{said}"
    );

    let config = hotrun_cmd(dir.path(), &["config", "--json"]);
    let text = String::from_utf8_lossy(&config.stdout);
    assert!(
        !text.contains("another-secret-value") && text.contains("visible"),
        "{text}"
    );
    let shown = hotrun_cmd(dir.path(), &["config", "--json", "--show-secrets"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("another-secret-value"));

    // Log files are private to the user and group.
    wait_until("the log file exists", || out_file.exists());
    assert_eq!(mode(&out_file), 0o640);
}

#[test]
fn runtime_files_are_private() {
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path().join("rt");
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'tick', script: '{}' }}] }};\n",
        app("ticker.js")
    ));
    let h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("HOTRUN_RUNTIME_DIR", &rt),
    );
    h.wait_for("tick 1");
    let folder = std::fs::read_dir(&rt)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&rt), 0o700);
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&folder.join("control.sock")), 0o600);
    assert_eq!(mode(&folder.join("preload.js")), 0o600);
}

#[test]
fn a_log_folder_that_does_not_exist_is_made_private_and_gets_every_line() {
    // PM2 creates the folder of `out_file`; so does hotrun (0750: the user and group).
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'web', script: '{}', out_file: './logs/app/out.log' }}] }};\n",
        app("ticker.js")
    ));
    let out_file = dir.path().join("logs/app/out.log");
    assert!(!dir.path().join("logs").exists());
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("tick 3");
    wait_until("the log file has tick 3", || {
        std::fs::read_to_string(&out_file).is_ok_and(|t| t.contains("tick 3"))
    });
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(text.contains("tick 1") && text.contains("tick 2"), "{text}");
    assert_eq!(mode(&dir.path().join("logs")), 0o750);
    assert_eq!(mode(&dir.path().join("logs/app")), 0o750);
    assert!(!h.output().contains("cannot open"), "{}", h.output());
}
