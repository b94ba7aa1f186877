//! `hotrun config` on the forms of issue #8: YAML (anchors, merge keys, errors at
//! line:column, discovery), JavaScript that computes (os, path, process.env, spread,
//! console output, ES modules), `.json` read as a JavaScript expression, `env_file`
//! layering and errors, and `deploy.<profile>.env` precedence.
//! (Throwing, never-ending and missing-package configs are in config_cli.rs.)

mod common;

use common::cli::{hotrun, hotrun_env, node_available};
use serde_json::{json, Value};

/// A temp folder with an empty server.js and worker.js and the given files.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.js"), "").unwrap();
    std::fs::write(dir.path().join("worker.js"), "").unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const ANCHORS: &str = "\
# PM2 ecosystem in YAML
defaults: &defaults
  exec_mode: fork
  max_memory_restart: 300M
  env: &env
    NODE_ENV: production
    PORT: 3000

apps:
  - <<: *defaults
    name: web
    script: server.js
  - <<: *defaults
    name: worker
    script: worker.js
    max_memory_restart: 1G
    env:
      <<: *env
      PORT: 3001
      QUEUE: mail
";

#[test]
fn yaml_with_anchors_and_merge_keys() {
    let dir = folder(&[("ecosystem.config.yml", ANCHORS)]);
    let run = hotrun(dir.path(), &["config", "--json"]);
    assert!(
        run.stderr.contains("using ecosystem.config.yml"),
        "{}",
        run.stderr
    );
    let apps = run.apps();
    assert_eq!(apps[0]["name"], "web");
    assert_eq!(apps[0]["exec_mode"], "fork");
    assert_eq!(apps[0]["max_memory_restart"], 300 << 20);
    assert_eq!(
        apps[0]["env"],
        json!({"NODE_ENV": "production", "PORT": "3000"})
    );
    assert_eq!(apps[1]["max_memory_restart"], 1 << 30);
    assert_eq!(
        apps[1]["env"],
        json!({"NODE_ENV": "production", "PORT": "3001", "QUEUE": "mail"})
    );
    // The unknown top-level key is reported at its line:column.
    assert!(
        run.stderr.contains(
            "warning: ecosystem.config.yml:2:1: defaults: unknown top-level key; ignored"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn yaml_errors_have_line_and_column() {
    let dir = folder(&[
        (
            "syntax.yml",
            "apps:\n  - name: web\n    script: [server.js\n",
        ),
        (
            "duplicate.yaml",
            "apps:\n  - name: web\n    script: server.js\n    name: again\n",
        ),
        (
            "type.yaml",
            "apps:\n  - name: web\n    script: server.js\n    instances: three\n",
        ),
        ("tabs.yml", "apps:\n\t- script: server.js\n"),
    ]);
    let cases = [
        (
            "syntax.yml",
            "syntax.yml:3:13: YAML syntax error: unclosed bracket '['",
        ),
        (
            "duplicate.yaml",
            "duplicate.yaml:4:5: YAML syntax error: duplicate mapping key: name",
        ),
        (
            "type.yaml",
            "type.yaml:4:16: instances must be a number, 'max' or -1 (got \"three\")",
        ),
        (
            "tabs.yml",
            "tabs.yml:2:2: YAML syntax error: tabs disallowed within this context (block indentation)",
        ),
    ];
    for (file, want) in cases {
        let run = hotrun(dir.path(), &["config", "--json", "--config", file]);
        assert_eq!(run.code, 4, "{file}: {}", run.stderr);
        assert_eq!(run.first(), want, "{file}");
        assert!(run.stdout.is_empty());
    }
}

#[test]
fn yaml_shapes_as_pm2_reads_them() {
    let dir = folder(&[
        ("list.yaml", "- script: server.js\n- script: worker.js\n"),
        ("one.yml", "name: solo\nscript: server.js\ninstances: 2\n"),
        ("pm2.yml", "pm2:\n  - script: server.js\n"),
        ("empty.yml", "# nothing\n"),
    ]);
    let names = |file: &str| -> Vec<Value> {
        hotrun(dir.path(), &["config", "--json", "--config", file])
            .apps()
            .iter()
            .map(|a| a["name"].clone())
            .collect()
    };
    assert_eq!(names("list.yaml"), [json!("server"), json!("worker")]);
    assert_eq!(names("one.yml"), [json!("solo")]);
    assert_eq!(names("pm2.yml"), [json!("server")]);
    let run = hotrun(dir.path(), &["config", "--config", "empty.yml"]);
    assert_eq!(run.code, 4);
    assert_eq!(
        run.first(),
        "empty.yml: the YAML document is empty: there is no app to run"
    );
}

#[test]
fn yaml_is_discovered_after_the_other_names() {
    let dir = folder(&[
        (
            "ecosystem.config.yaml",
            "apps:\n  - name: from-yaml\n    script: server.js\n",
        ),
        (
            "ecosystem.config.json5",
            "{ apps: [{ name: 'from-json5', script: 'server.js' }] }",
        ),
    ]);
    let run = hotrun(dir.path(), &["config", "--json"]);
    assert_eq!(run.apps()[0]["name"], "from-json5");
    std::fs::remove_file(dir.path().join("ecosystem.config.json5")).unwrap();
    let run = hotrun(dir.path(), &["config", "--json"]);
    assert_eq!(run.apps()[0]["name"], "from-yaml");
    assert_eq!(run.first(), "using ecosystem.config.yaml");
}

const COMPUTING: &str = "\
const os = require('os');
const path = require('path');

const base = {
  exec_mode: 'fork',
  env: { NODE_ENV: process.env.NODE_ENV || 'development', REGION: process.env.HOTRUN_TEST_REGION },
};

module.exports = {
  apps: [
    {
      ...base,
      name: `api-${os.cpus().length > 0 ? 'multi' : 'none'}`,
      script: path.join(__dirname, 'server.js'),
      cwd: __dirname,
      instances: Math.min(2, os.cpus().length + 1),
      env: { ...base.env, PORT: Number(process.env.HOTRUN_TEST_PORT) + 1, SHARED: true },
    },
    { ...base, name: 'worker', script: './worker.js' },
  ],
};
";

#[test]
fn a_computing_javascript_config() {
    if !node_available() {
        return common::cannot_run("node is not on PATH");
    }
    let dir = folder(&[("ecosystem.config.js", COMPUTING)]);
    let run = hotrun_env(
        dir.path(),
        &["config", "--json"],
        &[
            ("HOTRUN_TEST_REGION", "eu-west"),
            ("HOTRUN_TEST_PORT", "4000"),
            ("NODE_ENV", "staging"),
        ],
    );
    assert!(
        run.stderr
            .contains("ecosystem.config.js uses JavaScript; evaluated with node"),
        "{}",
        run.stderr
    );
    let apps = run.apps();
    let real = dir.path().canonicalize().unwrap();
    assert_eq!(apps[0]["name"], "api-multi");
    assert_eq!(
        apps[0]["script"],
        real.join("server.js").display().to_string()
    );
    assert_eq!(apps[0]["cwd"], real.display().to_string());
    assert_eq!(apps[0]["instances"], 2);
    assert_eq!(apps[0]["exec_mode"], "fork");
    assert_eq!(
        apps[0]["env"],
        json!({"NODE_ENV": "staging", "REGION": "eu-west", "PORT": "4001", "SHARED": "true"})
    );
    assert_eq!(apps[1]["name"], "worker");
    assert_eq!(
        apps[1]["env"],
        json!({"NODE_ENV": "staging", "REGION": "eu-west"})
    );
}

#[test]
fn console_output_of_a_config_goes_to_stderr() {
    if !node_available() {
        return common::cannot_run("node is not on PATH");
    }
    let dir = folder(&[(
        "ecosystem.config.js",
        "console.log('{\"apps\": \"not this\"}');\nprocess.stdout.write('raw write\\n');\nconsole.error('to stderr');\nconst n = 1 + 1;\nmodule.exports = { apps: [{ script: 'server.js', instances: n }] };\n",
    )]);
    let run = hotrun(dir.path(), &["config", "--json"]);
    assert_eq!(run.apps()[0]["instances"], 2);
    for text in ["{\"apps\": \"not this\"}", "raw write", "to stderr"] {
        assert!(run.stderr.contains(text), "{text}: {}", run.stderr);
        assert!(!run.stdout.contains(text));
    }
}

#[test]
fn es_modules_and_exports_forms() {
    if !node_available() {
        return common::cannot_run("node is not on PATH");
    }
    let dir = folder(&[
        (
            "esm.config.js",
            "import os from 'os';\nexport default { apps: [{ name: 'esm-js', script: 'server.js', instances: os.cpus().length > 0 ? 2 : 1 }] };\n",
        ),
        (
            "top-await.config.mjs",
            "const port = await Promise.resolve(5000);\nexport default { apps: [{ name: 'tla', script: 'server.js', env: { PORT: port } }] };\n",
        ),
        (
            "named.config.mjs",
            "export const apps = [{ name: 'named', script: 'server.js' }];\n",
        ),
        (
            "exports.config.js",
            "const n = 'exp';\nexports.apps = [{ name: n, script: 'server.js' }];\n",
        ),
        (
            "array.config.js",
            "const s = 'server.js';\nmodule.exports = [{ name: 'arr', script: s }];\n",
        ),
        (
            "object.config.cjs",
            "const s = 'server.js';\nmodule.exports = { name: 'obj', script: s };\n",
        ),
        (
            "pm2.config.js",
            "const s = 'server.js';\nmodule.exports = { pm2: [{ name: 'pm2-key', script: s }] };\n",
        ),
    ]);
    for (file, name) in [
        ("esm.config.js", "esm-js"),
        ("top-await.config.mjs", "tla"),
        ("named.config.mjs", "named"),
        ("exports.config.js", "exp"),
        ("array.config.js", "arr"),
        ("object.config.cjs", "obj"),
        ("pm2.config.js", "pm2-key"),
    ] {
        let run = hotrun(dir.path(), &["config", "--json", "--config", file]);
        let apps = run.apps();
        assert_eq!(apps.len(), 1, "{file}");
        assert_eq!(apps[0]["name"], name, "{file}");
    }
    let run = hotrun(
        dir.path(),
        &["config", "--json", "--config", "top-await.config.mjs"],
    );
    assert_eq!(run.apps()[0]["env"]["PORT"], "5000");
}

#[test]
fn json_is_read_as_a_javascript_expression_like_pm2() {
    let dir = folder(&[(
        "ecosystem.json",
        "{\n  \"apps\": [{\n    \"script\": \"server.js\",\n    \"instances\": 1 + 2,\n    \"env\": { \"LIST\": [\"a\", \"b\"].join(\",\") }\n  }]\n}\n",
    )]);
    if node_available() {
        let run = hotrun(dir.path(), &["config", "--json"]);
        assert!(
            run.stderr.contains(
                "ecosystem.json is not JSON5; evaluated as a JavaScript expression with node, as PM2 does"
            ),
            "{}",
            run.stderr
        );
        let app = &run.apps()[0];
        assert_eq!(app["instances"], 3);
        assert_eq!(app["env"]["LIST"], "a,b");
    }
    // Without node, the JSON5 error at its line:column.
    let run = hotrun_env(
        dir.path(),
        &["config", "--json"],
        &[("HOTRUN_NODE", "/nonexistent/node")],
    );
    assert_eq!(run.code, 4);
    assert_eq!(
        run.first(),
        "ecosystem.json:4:20: syntax error: expected comma"
    );
}

#[test]
fn object_env_values_get_json_text_and_a_warning() {
    let dir = folder(&[(
        "e.json5",
        "{ apps: [{ script: 'server.js', env: { OBJ: { a: 1 }, LIST: [1, 'x'], N: 5, B: false } }] }",
    )]);
    let run = hotrun(dir.path(), &["config", "--json", "--config", "e.json5"]);
    let env = &run.apps()[0]["env"];
    assert_eq!(
        env,
        &json!({"OBJ": "{\"a\":1}", "LIST": "[1,\"x\"]", "N": "5", "B": "false"})
    );
    assert!(run.stderr.contains(
        "warning: e.json5:1:45: env.OBJ: an object or array; the variable gets its JSON text (hotrun differs from PM2 here, which passes \"[object Object]\")"
    ), "{}", run.stderr);
}

const LAYERS: &str = "{
  apps: [{
    script: 'server.js',
    env_file: ['.env', 'config/.env.shared', '?.env.local'],
    env: { B: 'env', C: 'env', D: 'env', E: 'env' },
    env_production: { E: 'env_production' },
  }],
  deploy: {
    production: {
      host: 'example.com',
      env: { C: 'deploy', D: 'deploy', E: 'deploy' },
    },
  },
}
";

#[test]
fn env_file_layering_and_deploy_env_precedence() {
    let dir = folder(&[
        ("eco.json5", LAYERS),
        (
            ".env",
            "# dotenv syntax\nA=file\nexport B=file\nQUOTED=\"two words\" # comment\nINHERITED=from-file\n",
        ),
    ]);
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/.env.shared"),
        "A=shared\nSHARED='yes'\n",
    )
    .unwrap();
    // No `.env.local`: it is optional.
    let env_of = |args: &[&str]| {
        let mut a = vec!["config", "--json", "--config", "eco.json5"];
        a.extend_from_slice(args);
        let run = hotrun_env(dir.path(), &a, &[("INHERITED", "from-process")]);
        run.apps()[0]["env"].clone()
    };
    // inherited < env_file < env; the inherited environment is not in the plan.
    assert_eq!(
        env_of(&[]),
        json!({
            "A": "shared", "B": "env", "C": "env", "D": "env", "E": "env",
            "QUOTED": "two words", "SHARED": "yes", "INHERITED": "from-file",
        })
    );
    // ... < deploy.production.env < env_production.
    assert_eq!(
        env_of(&["--env", "production"]),
        json!({
            "A": "shared", "B": "env", "C": "deploy", "D": "deploy", "E": "env_production",
            "QUOTED": "two words", "SHARED": "yes", "INHERITED": "from-file",
        })
    );
}

#[test]
fn deploy_env_alone_makes_the_profile_known() {
    let dir = folder(&[(
        "ecosystem.json",
        r#"{"apps": [{"script": "server.js", "env": {"NODE_ENV": "development", "PORT": 3000}}],
            "deploy": {"production": {"env": {"NODE_ENV": "production"}}, "staging": {"host": "x"}}}"#,
    )]);
    let run = hotrun(dir.path(), &["config", "--json", "--env", "production"]);
    assert_eq!(
        run.apps()[0]["env"],
        json!({"NODE_ENV": "production", "PORT": "3000"})
    );
    assert!(
        run.stderr.contains("deploy: PM2's deploy section; hotrun does not deploy, it only uses deploy.NAME.env with --env NAME"),
        "{}",
        run.stderr
    );
    // A deploy target without env is no profile.
    let run = hotrun(dir.path(), &["config", "--json", "--env", "staging"]);
    assert_eq!(run.code, 4);
    assert!(run
        .first()
        .contains("--env staging: no app defines env_staging"));
}

#[test]
fn missing_and_broken_env_files() {
    let dir = folder(&[
        (
            "missing.json5",
            "{ apps: [{\n  script: 'server.js',\n  env_file: '.env.nope',\n}] }",
        ),
        (
            "broken.json5",
            "{ apps: [{ script: 'server.js', env_file: ['.env'] }] }",
        ),
        (
            "bad-type.json5",
            "{ apps: [{ script: 'server.js', env_file: 5 }] }",
        ),
        (".env", "GOOD=1\nthis line is wrong\n"),
    ]);
    let run = hotrun(
        dir.path(),
        &["config", "--json", "--config", "missing.json5"],
    );
    assert_eq!(run.code, 4);
    assert_eq!(
        run.first(),
        format!(
            "missing.json5:3:13: env_file: {}: no such file",
            dir.path().join(".env.nope").display()
        )
    );
    assert!(
        run.stderr
            .contains("write '?.env.nope' for a file that may be missing"),
        "{}",
        run.stderr
    );

    let run = hotrun(
        dir.path(),
        &["config", "--json", "--config", "broken.json5"],
    );
    assert_eq!(run.code, 4);
    assert_eq!(
        run.first(),
        format!(
            "broken.json5:1:44: env_file: {}:2: not a KEY=value line (at character 6): this line is wrong",
            dir.path().join(".env").display()
        )
    );

    let run = hotrun(
        dir.path(),
        &["config", "--json", "--config", "bad-type.json5"],
    );
    assert_eq!(run.code, 4);
    assert_eq!(
        run.first(),
        "bad-type.json5:1:43: env_file must be a file path or an array of file paths (a leading ? marks an optional file) (got 5)"
    );
}

#[test]
fn env_file_in_yaml_relative_to_the_app_cwd() {
    let dir = folder(&[(
        "ecosystem.config.yml",
        "apps:\n  - script: server.js\n    cwd: app\n    env_file: .env\n    env:\n      B: env\n",
    )]);
    std::fs::create_dir(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("app/server.js"), "").unwrap();
    std::fs::write(dir.path().join("app/.env"), "A=1\nB=2\n").unwrap();
    let run = hotrun(dir.path(), &["config", "--json"]);
    assert_eq!(run.apps()[0]["env"], json!({"A": "1", "B": "env"}));
    std::fs::remove_file(dir.path().join("app/.env")).unwrap();
    let run = hotrun(dir.path(), &["config", "--json"]);
    assert_eq!(run.code, 4);
    assert!(
        run.first()
            .starts_with("ecosystem.config.yml:4:15: env_file: "),
        "{}",
        run.first()
    );
}
