//! Feeds arbitrary bytes to the configuration pipeline as a JSON5 or a YAML ecosystem
//! file: it must answer with a plan or an error, never panic or hang.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use hotrun::config::{self, LoadOptions};
use libfuzzer_sys::fuzz_target;

fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hotrun-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("server.js"), "").unwrap();
        // Files that are not literals would go to node: keep the run in-process.
        std::env::set_var("HOTRUN_NODE", "/nonexistent/node");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = folder();
    let (name, text) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => ("ecosystem.config.yml", rest),
        Some((_, rest)) => ("ecosystem.config.json5", rest),
        None => ("ecosystem.config.json5", data),
    };
    std::fs::write(dir.join(name), text).unwrap();
    let opts = LoadOptions {
        config: Some(PathBuf::from(name)),
        profile: None,
        only: vec![],
        cwd: dir.clone(),
    };
    let _ = config::load(&opts);
});
