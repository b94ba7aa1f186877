//! PM2 keys and forms found in public ecosystem files, run for real: `increment_var`
//! (each instance gets the value plus its instance id) and `log_date_format: false`
//! (PM2 runs it and writes no date).

mod common;

use common::*;

#[test]
fn increment_var_gives_each_instance_the_value_plus_its_id_and_a_false_date_format_none() {
    let dir = config_dir(
        "module.exports = { apps: [
           { name: 'ports', script: 'sh', instances: 3, increment_var: 'PORT',
             env: { PORT: 4000 },
             args: ['-c', 'echo PORT=$PORT id=$NODE_APP_INSTANCE; exec sleep 600'] },
           { name: 'plain', script: 'sh', log_date_format: false, out_file: 'plain.log',
             args: ['-c', 'echo plain line; exec sleep 600'] },
         ] };\n",
    );
    let h = Hotrun::start(dir.path(), &[]);
    let mut lines: Vec<String> = h
        .wait_for_n("PORT=", 3)
        .iter()
        .map(|l| l.split("| ").last().unwrap().trim().to_string())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        ["PORT=4000 id=0", "PORT=4001 id=1", "PORT=4002 id=2"],
        "{}",
        h.output()
    );
    // `log_date_format: false`: the line as written, no date before it.
    let log = dir.path().join("plain.log");
    wait_until("plain.log has its line", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("plain line"))
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().next(), Some("plain line"), "{text}");
    assert!(!h.output().contains("not supported"), "{}", h.output());
}

#[test]
fn cron_restart_with_seconds_reloads_under_load_failing_no_request() {
    use common::http::free_port;
    use common::node_load::{run_for, Clients};
    let port = free_port();
    // Every second (PM2 accepts a seconds field: croner's syntax); a reload asked for
    // while one runs is folded into one more after it.
    let dir = http_dir(port, "instances: 2, cron_restart: '* * * * * *'");
    let h = Hotrun::start(dir.path(), &[]);
    let st = wait_online(dir.path());
    let cron = &app_status(&st, "web")["cron_restart"];
    assert_eq!(cron["expression"], "* * * * * *", "{st}");
    assert!(
        cron["next"].as_str().is_some_and(|t| t.contains('T')),
        "{st}"
    );
    // 16 clients, a new connection per request, for 5 s: a reload after another.
    let r = run_for(port, Clients::new(16), 5000);
    assert!(
        r.ok > 100 && r.failed == 0 && r.hung == 0,
        "{r:?}\n{}",
        h.output()
    );
    let done = h.count("reload done, every instance replaced");
    eprintln!("cron_restart under load: {done} reloads; {r:?}");
    assert!(done >= 3, "{done} reloads done\n{}", h.output());
    assert!(
        h.output()
            .contains("web: cron_restart '* * * * * *' -> reload")
            && h.output().contains("rolling reload (cron_restart)"),
        "{}",
        h.output()
    );
    assert_eq!(
        app_status(&status(dir.path()), "web")["last_reload"]["trigger"],
        "cron_restart"
    );
}
