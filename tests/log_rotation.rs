//! Log rotation of the files hotrun writes: `log_max_size` and `log_retain` under a flood.

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_30_mb_flood_rotates_into_retain_files_of_whole_lines_in_order() {
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'flood', script: '{}', autorestart: false,
           out_file: 'logs/out.log', merge_logs: true, log_max_size: '1M', log_retain: 3,
           env: {{ LINES: 300000 }} }}] }};\n",
        app("flood.js")
    ));
    let _h = Hotrun::start_quiet(Command::new(HOTRUN).current_dir(dir.path()));
    let current = dir.path().join("logs/out.log");
    wait_until("the flood is written", || {
        std::fs::read_to_string(&current).is_ok_and(|t| t.ends_with("flood done\n"))
    });
    let file = |n: u32| match n {
        0 => current.clone(),
        n => dir.path().join(format!("logs/out.log.{n}")),
    };
    assert!(!file(4).exists(), "log_retain: 3 keeps 3 rotated files");
    // Oldest first: .3, .2, .1, the current one.
    let mut numbers = Vec::new();
    for n in [3, 2, 1, 0] {
        let path = file(n);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let size = text.len() as u64;
        assert!(size <= 1 << 20, "{path:?} is {size} bytes");
        if n > 0 {
            assert!(
                size > (1 << 20) - 200,
                "{path:?} was rotated early: {size} bytes"
            );
        }
        for line in text.lines() {
            if line == "flood done" {
                continue;
            }
            // Every line whole: `line N xxx...`, 99 bytes.
            assert_eq!(line.len(), 99, "{path:?}: torn line {line:?}");
            let number: u64 = line.split(' ').nth(1).unwrap().parse().unwrap();
            numbers.push(number);
        }
    }
    // The newest lines, every one, in order, up to the last.
    assert_eq!(*numbers.last().unwrap(), 299_999);
    let first = numbers[0];
    assert!(
        first > 250_000,
        "older lines were dropped, the newest kept: from {first}"
    );
    let want: Vec<u64> = (first..300_000).collect();
    assert!(numbers == want, "lines missing or out of order");
}
