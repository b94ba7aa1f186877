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
