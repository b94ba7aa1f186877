//! Bad input never panics: the configuration pipeline gets arbitrary bytes, mutations of
//! a valid file, deep nesting, huge numbers, duplicate keys and big files, and always
//! answers with a result or an error that has an exit code. The CLI refuses conflicting
//! or unknown arguments with clap's usage code.

mod common;

use std::path::{Path, PathBuf};

use hotrun::config::{self, LoadOptions};
use proptest::prelude::*;

fn load_text(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), i32> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let opts = LoadOptions {
        config: Some(PathBuf::from(name)),
        profile: None,
        only: vec![],
        cwd: dir.to_path_buf(),
    };
    // JS files that are not literals would go to node; keep these to the in-process
    // readers (node's own errors are tested elsewhere).
    std::env::set_var("HOTRUN_NODE", "/nonexistent/node");
    config::load(&opts).map(|_| ()).map_err(|e| {
        assert!(!e.to_string().is_empty());
        e.exit_code()
    })
}

const SEED: &str = include_str!("../fixtures/configs/seed/ecosystem.config.js");

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                   ext in prop::sample::select(vec!["json5", "json", "js", "yml"])) {
        let dir = tempfile::tempdir().unwrap();
        let _ = load_text(dir.path(), &format!("ecosystem.config.{ext}"), &bytes);
    }

    #[test]
    fn mutations_of_the_seeds_file_never_panic(at in 0usize..SEED.len(), cut in 0usize..40,
                                               insert in "[ -~]{0,12}") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.js"), "").unwrap();
        let mut text = SEED.as_bytes().to_vec();
        let end = (at + cut).min(text.len());
        text.splice(at..end, insert.bytes());
        let _ = load_text(dir.path(), "ecosystem.config.js", &text);
    }
}

#[test]
fn nasty_documents_get_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.js"), "").unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, String)> = vec![
        ("deep.json5", deep.clone()),
        ("deep.yml", format!("apps: {deep}")),
        (
            "huge.json5",
            "{apps: [{script: 'server.js', instances: 1e400}]}".into(),
        ),
        (
            "huge2.json5",
            "{apps: [{script: 'server.js', kill_timeout: 99999999999999999999999}]}".into(),
        ),
        (
            "dupes.json5",
            "{apps: [{script: 'server.js', name: 'a', name: 'b'}]}".into(),
        ),
        ("empty.json5", String::new()),
        ("null.json5", "null".into()),
        ("string.json5", "'apps'".into()),
        ("apps_string.json5", "{apps: 'server.js'}".into()),
    ];
    for (name, text) in cases {
        let got = load_text(dir.path(), name, text.as_bytes());
        if let Err(code) = got {
            assert!((3..=5).contains(&code), "{name}: exit code {code}");
        }
    }
}

#[test]
fn a_big_file_is_read_or_refused_quickly() {
    // 20 MB of env values; the 100 MB variant runs with --ignored.
    big_file(20);
}

#[test]
#[ignore = "slow: a 100 MB ecosystem file; run with --ignored"]
fn a_100_mb_file_is_read_or_refused() {
    big_file(100);
}

fn big_file(mb: usize) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.js"), "").unwrap();
    let value = "v".repeat(1024 * 1024);
    let env: Vec<String> = (0..mb).map(|i| format!("K{i}: '{value}'")).collect();
    let text = format!(
        "{{apps: [{{script: 'server.js', env: {{ {} }} }}]}}",
        env.join(", ")
    );
    let t0 = std::time::Instant::now();
    let _ = load_text(dir.path(), "ecosystem.config.json5", text.as_bytes());
    eprintln!("{mb} MB file: {:?}", t0.elapsed());
}

#[test]
fn conflicting_or_unknown_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["reload", "--dry-run", "--no-wait"],
        vec!["status", "--json", "--ready"],
        vec!["status", "--verbose"],
        vec!["frobnicate"],
        vec!["--memory-interval", "1"],
        vec!["watch", "--instances", "0"],
    ] {
        let out = common::hotrun_cmd(dir.path(), &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
