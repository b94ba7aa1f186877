//! `hotrun init`: writes a commented `ecosystem.config.js` for the current folder, in the
//! seed's style. The script comes from what the folder holds: a Next.js custom server
//! (a server file that requires `next`), else package.json's `start` script, else a usual
//! entry file. An existing ecosystem file is never overwritten.

use std::fs;
use std::path::Path;

use serde_json::Value;

/// What `init` found to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    /// `script` and `args` for the file.
    pub script: String,
    pub args: Option<String>,
    /// Where it came from, for the comment and the message.
    pub why: String,
    /// A Node server run directly (not through a launcher).
    pub direct: bool,
    /// Its code calls `process.send('ready')`.
    pub sends_ready: bool,
}

/// Looks at `dir` and decides what to run.
pub fn inspect(dir: &Path) -> Found {
    let mut found = choose(dir);
    let code = fs::read_to_string(dir.join(&found.script)).unwrap_or_default();
    found.sends_ready = code.contains("process.send") && code.contains("'ready'")
        || code.contains("process.send(\"ready\")");
    found
}

fn choose(dir: &Path) -> Found {
    let package: Option<Value> = fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let name = package
        .as_ref()
        .and_then(|p| p["name"].as_str())
        .map(String::from)
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "app".into());
    for candidate in ["server.js", "server.mjs", "server.cjs", "server.ts"] {
        let text = fs::read_to_string(dir.join(candidate)).unwrap_or_default();
        if text.contains("require('next')")
            || text.contains("require(\"next\")")
            || text.contains("from 'next'")
            || text.contains("from \"next\"")
        {
            return Found {
                name,
                script: candidate.into(),
                args: None,
                why: format!("{candidate} is a Next.js custom server"),
                direct: true,
                sends_ready: false,
            };
        }
    }
    if let Some(start) = package
        .as_ref()
        .and_then(|p| p["scripts"]["start"].as_str())
    {
        let words: Vec<&str> = start.split_whitespace().collect();
        if let ["node", file] = words.as_slice() {
            return Found {
                name,
                script: file.to_string(),
                args: None,
                why: format!("package.json's start script is `{start}`"),
                direct: true,
                sends_ready: false,
            };
        }
        return Found {
            name,
            script: "npm".into(),
            args: Some("start".into()),
            why: format!("package.json's start script is `{start}`"),
            direct: false,
            sends_ready: false,
        };
    }
    for candidate in ["server.js", "index.js", "app.js", "main.js"] {
        if dir.join(candidate).is_file() {
            return Found {
                name,
                script: candidate.into(),
                args: None,
                why: format!("{candidate} is here"),
                direct: true,
                sends_ready: false,
            };
        }
    }
    Found {
        name,
        script: "server.js".into(),
        args: None,
        why: "nothing to run was found: set `script`".into(),
        direct: true,
        sends_ready: false,
    }
}

/// The file's text.
pub fn render(found: &Found) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let args = found
        .args
        .as_deref()
        .map(|a| {
            format!(
                "      args: {}, // passed as they are, no shell\n",
                quote(a)
            )
        })
        .unwrap_or_default();
    let ready = if found.direct && found.sends_ready {
        "      // The app calls process.send('ready') once it listens; hotrun waits for it\n      // before it stops an old instance in a reload.\n      wait_ready: true,\n"
    } else if found.direct {
        "      // Ready = it listens on its port (hotrun sees it). If the app warms up after\n      // listening, call process.send('ready') when done and set wait_ready: true.\n"
    } else {
        "      // Through a launcher (npm start) the server is a grandchild: declare its port\n      // so that hotrun binds it and every instance shares it. Ready = it listens\n      // (or process.send('ready'), which hotrun delivers from there too).\n      port: 3000,\n"
    };
    format!(
        "// ecosystem.config.js, written by `hotrun init` ({why}).
// Run it with `hotrun --env production` (or `hotrun watch` while developing); PM2 reads
// this file too.
module.exports = {{
  apps: [
    {{
      name: {name},
      script: {script},
{args}      instances: 2, // 'max' = one per CPU this container may use
      exec_mode: 'cluster',
{ready}      listen_timeout: 10000, // ms to wait for ready before a reload fails
      kill_timeout: 5000, // ms between SIGINT and SIGKILL when an instance stops
      max_memory_restart: '300M', // replaced (without downtime) above this
      watch: false, // `hotrun watch` watches the folder anyway
      env: {{
        NODE_ENV: 'development',
      }},
      env_production: {{
        NODE_ENV: 'production',
      }},
    }},
  ],
}};
",
        why = found.why,
        name = quote(&found.name),
        script = quote(&found.script),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn what_to_run_is_found_in_the_folder() {
        type Files<'a> = Vec<(&'a str, &'a str)>;
        let table: Vec<(Files, &str, Option<&str>)> = vec![
            (
                vec![("server.js", "const next = require('next');")],
                "server.js",
                None,
            ),
            (
                vec![(
                    "package.json",
                    r#"{"name":"shop","scripts":{"start":"next start"}}"#,
                )],
                "npm",
                Some("start"),
            ),
            (
                vec![(
                    "package.json",
                    r#"{"scripts":{"start":"node api/main.js"}}"#,
                )],
                "api/main.js",
                None,
            ),
            (vec![("index.js", "")], "index.js", None),
            (vec![], "server.js", None),
        ];
        for (files, script, args) in table {
            let dir = folder(&files);
            let found = inspect(dir.path());
            assert_eq!(found.script, script, "{files:?}");
            assert_eq!(found.args.as_deref(), args, "{files:?}");
        }
        let dir = folder(&[(
            "package.json",
            r#"{"name":"shop","scripts":{"start":"next start"}}"#,
        )]);
        assert_eq!(inspect(dir.path()).name, "shop");
    }
}
