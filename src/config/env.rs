//! Environment layers, lowest first: `env_file` (hotrun's key: dotenv files), `env`,
//! `deploy.NAME.env` (PM2 puts it there with `--env NAME`), `env_NAME`. Each value is
//! turned into the string the process will see (6379 -> "6379", true -> "true"; an object
//! or an array becomes its JSON text, with a warning, where PM2 gives "[object Object]").
//!
//! `env_file` is a path or an array of paths, relative to the app's cwd, read with dotenv
//! syntax (comments, quotes, `export ` prefix) through the dotenvy crate without touching
//! hotrun's own environment. A missing file is an error; a path written with a leading `?`
//! (`env_file: '?.env.local'`) names an optional file, skipped when it does not exist.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::error::ConfigError;
use super::position::{Origin, Seg, Target};

/// One object of variables, and where it is in the file.
pub struct Layer<'a> {
    pub map: &'a Map<String, Value>,
    pub path: Vec<Seg>,
}

/// The string a value becomes in the environment, and whether it was structured
/// (object/array) data.
pub fn env_string(v: &Value) -> (String, bool) {
    match v {
        Value::String(s) => (s.clone(), false),
        Value::Null => (String::new(), false),
        Value::Bool(_) | Value::Number(_) => (v.to_string(), false),
        Value::Array(_) | Value::Object(_) => (v.to_string(), true),
    }
}

/// Why a variable cannot reach a process, if it cannot: the environment is a list of
/// NUL-terminated `NAME=value` strings.
pub fn unpassable(name: &str, value: &str) -> Option<(Target, &'static str)> {
    if name.is_empty() {
        Some((
            Target::Key,
            "an empty variable name cannot be passed to a process",
        ))
    } else if name.contains('=') {
        Some((
            Target::Key,
            "a variable name cannot contain '=' (the environment is NAME=value)",
        ))
    } else if name.contains('\0') {
        Some((
            Target::Key,
            "a variable name cannot contain a NUL character",
        ))
    } else if value.contains('\0') {
        Some((
            Target::Value,
            "a value cannot contain a NUL character (a process receives NUL-terminated text)",
        ))
    } else {
        None
    }
}

/// Merges the layers in order (keys of later layers win) over `base`. A variable that no
/// process could receive is an error at its place in the file.
pub fn merge(
    mut base: BTreeMap<String, String>,
    layers: &[Layer],
    origin: &Origin,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    for layer in layers {
        for (k, v) in layer.map {
            let (s, structured) = env_string(v);
            let mut p = layer.path.clone();
            p.push(Seg::Key(k.clone()));
            let shown = if k.is_empty() {
                "\"\"".to_string()
            } else {
                k.escape_debug().to_string()
            };
            let subject = match layer.path.last() {
                Some(Seg::Key(parent)) => format!("{parent}.{shown}"),
                _ => shown,
            };
            if let Some((target, why)) = unpassable(k, &s) {
                return Err(ConfigError::invalid(origin.msg(
                    &p,
                    target,
                    Some(&subject),
                    &format!(": {why}"),
                ))
                .with_help("rename the variable or remove the character from its value"));
            }
            if structured {
                warnings.push(origin.msg(
                    &p,
                    Target::Value,
                    Some(&subject),
                    ": an object or array; the variable gets its JSON text (hotrun differs from PM2 here, which passes \"[object Object]\")",
                ));
            }
            base.insert(k.clone(), s);
        }
    }
    Ok(base)
}

/// An `env_file` entry as written: the path, and whether it is optional (`?path`).
pub fn env_file_spec(written: &str) -> (&str, bool) {
    match written.strip_prefix('?') {
        Some(rest) => (rest, true),
        None => (written, false),
    }
}

/// Why an env file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFileError {
    /// It does not exist.
    Missing,
    /// It exists but cannot be read (a folder, permissions, not UTF-8).
    Unreadable(String),
    /// A line is not dotenv syntax: its 1-based number (when found) and what is wrong.
    Syntax(Option<usize>, String),
}

/// The variables of the dotenv file at `path`, in file order (a later duplicate wins when
/// they are inserted in order). hotrun's own environment is not changed.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(EnvFileError::Missing),
        Err(e) => return Err(EnvFileError::Unreadable(e.to_string())),
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| EnvFileError::Unreadable("not valid UTF-8".to_string()))?;
    parse_dotenv(&text)
}

/// Parses dotenv text with dotenvy.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => out.push(pair),
            Err(dotenvy::Error::LineParse(line, index)) => {
                let first = line.lines().next().unwrap_or("").to_string();
                let number = text
                    .lines()
                    .position(|l| l.trim_end_matches('\r') == first.trim_end_matches('\r'))
                    .map(|n| n + 1);
                let col = index + 1;
                return Err(EnvFileError::Syntax(
                    number,
                    format!(
                        "not a KEY=value line (at character {col}): {}",
                        first.trim_end()
                    ),
                ));
            }
            Err(e) => return Err(EnvFileError::Syntax(None, e.to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn variables_a_process_cannot_receive_are_named() {
        let table = [
            ("A", "ok", None),
            ("A_B", "", None),
            ("", "x", Some("empty variable name")),
            ("A=B", "x", Some("cannot contain '='")),
            ("A\0B", "x", Some("name cannot contain a NUL")),
            ("X", "a\0b", Some("value cannot contain a NUL")),
        ];
        for (name, value, want) in table {
            let got = unpassable(name, value).map(|(_, why)| why);
            match (got, want) {
                (None, None) => {}
                (Some(why), Some(w)) => assert!(why.contains(w), "{name:?}: {why}"),
                other => panic!("{name:?}={value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn profile_over_env() {
        let env =
            json!({"NODE_ENV": "development", "Redis_PORT": 6379, "DEBUG": true, "EMPTY": null});
        let prod = json!({"NODE_ENV": "production", "HTTP_PORT": 8888, "OBJ": {"a": 1}});
        let origin = Origin {
            display: "e.js".into(),
            text: None,
        };
        let mut warnings = Vec::new();
        let mut base = BTreeMap::new();
        base.insert("PORT".to_string(), "3000".to_string());
        base.insert("NODE_ENV".to_string(), "x".to_string());
        let merged = merge(
            base,
            &[
                Layer {
                    map: env.as_object().unwrap(),
                    path: vec![Seg::Key("env".into())],
                },
                Layer {
                    map: prod.as_object().unwrap(),
                    path: vec![Seg::Key("env_production".into())],
                },
            ],
            &origin,
            &mut warnings,
        )
        .unwrap();
        assert_eq!(merged["NODE_ENV"], "production");
        assert_eq!(merged["Redis_PORT"], "6379");
        assert_eq!(merged["HTTP_PORT"], "8888");
        assert_eq!(merged["DEBUG"], "true");
        assert_eq!(merged["EMPTY"], "");
        assert_eq!(merged["PORT"], "3000");
        assert_eq!(merged["OBJ"], "{\"a\":1}");
        assert_eq!(
            warnings,
            ["e.js: env_production.OBJ: an object or array; the variable gets its JSON text (hotrun differs from PM2 here, which passes \"[object Object]\")"]
        );
    }

    #[test]
    fn dotenv_syntax() {
        let text = "# comment\nA=1\nexport B='two words'\nC=\"line\\nbreak\" # trailing comment\r\nEMPTY=\nA=again\n";
        let vars = parse_dotenv(text).unwrap();
        assert_eq!(
            vars,
            [
                ("A".to_string(), "1".to_string()),
                ("B".into(), "two words".into()),
                ("C".into(), "line\nbreak".into()),
                ("EMPTY".into(), "".into()),
                ("A".into(), "again".into()),
            ]
        );
        match parse_dotenv("OK=1\nthis is not valid\n") {
            Err(EnvFileError::Syntax(Some(2), m)) => {
                assert!(m.contains("this is not valid"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(env_file_spec("?.env.local"), (".env.local", true));
        assert_eq!(env_file_spec(".env"), (".env", false));
        assert_eq!(
            read_env_file(Path::new("/nonexistent/hotrun/.env")),
            Err(EnvFileError::Missing)
        );
    }
}
