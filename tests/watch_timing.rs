//! Watching on time: a change starts its reload when its `watch_delay` window ends, timed
//! by the raw events, not when notify's debouncer hands the change over (up to 40 ms
//! later). Alone in its binary, so that no other test shares the machine while it measures.

mod common;

use std::time::{Duration, Instant};

use common::http::free_port;
use common::*;

/// The default window: the debouncer holds a change 70 ms and ticks every 70 ms, so it
/// hands the change over 70 to 140 ms after it happened, past the window's end for about a
/// third of the changes (what the reload waited for before the tap recorded paths).
const DELAY: Duration = Duration::from_millis(100);
/// Writes measured, 1 s apart or more: one of them came over 20 ms late in about 4 of 5
/// runs when the reload waited for the debouncer.
const WRITES: usize = 10;
/// How long after its window a reload line may come: the loop's timer, the console
/// thread, the pipe and this test's reader, on a small busy machine (2-12 ms measured).
const LATE_AT_MOST: Duration = Duration::from_millis(20);

#[test]
fn a_change_starts_its_reload_when_its_window_ends() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    let data = dir.path().join("data.js");
    std::fs::write(&data, "// 0\n").unwrap();
    std::fs::write(
        dir.path().join("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', wait_ready: true,
               watch: true, watch_delay: {}, env: {{ HTTP_PORT: {} }} }}] }};\n",
            DELAY.as_millis(),
            free_port()
        ),
    )
    .unwrap();
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("watching for changes");
    wait_online(dir.path());
    let mut late = Vec::new();
    for n in 1..=WRITES {
        let before = Instant::now();
        std::fs::write(&data, format!("// {n}\n")).unwrap();
        h.wait_for_n("-> reload", n);
        late.push(before.elapsed().saturating_sub(DELAY));
        // Exactly one reload per write, held through a quiet second (the spacing).
        wait_reloads_held(dir.path(), "web", n as i64);
    }
    eprintln!("reload lines after their window: {late:?}");
    assert!(
        late.iter().all(|l| *l <= LATE_AT_MOST),
        "a reload line came more than {LATE_AT_MOST:?} after its window: {late:?}\n{}",
        h.output()
    );
    assert_eq!(
        h.count("web: 1 file changed (data.js) -> reload"),
        WRITES,
        "{}",
        h.output()
    );
}
