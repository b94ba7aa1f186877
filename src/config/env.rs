//! Environment profiles: `env`, then `env_NAME` over it (`--env NAME`), each value turned
//! into the string the process will see (6379 -> "6379", true -> "true"; an object or an
//! array becomes its JSON text, with a warning).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

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

/// Merges the layers in order (keys of later layers win) over `base`.
pub fn merge(
    mut base: BTreeMap<String, String>,
    layers: &[Layer],
    origin: &Origin,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, String> {
    for layer in layers {
        for (k, v) in layer.map {
            let (s, structured) = env_string(v);
            if structured {
                let mut p = layer.path.clone();
                p.push(Seg::Key(k.clone()));
                let subject = match layer.path.last() {
                    Some(Seg::Key(parent)) => format!("{parent}.{k}"),
                    _ => k.clone(),
                };
                warnings.push(origin.msg(
                    &p,
                    Target::Value,
                    Some(&subject),
                    ": an object or array; the variable gets its JSON text",
                ));
            }
            base.insert(k.clone(), s);
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        );
        assert_eq!(merged["NODE_ENV"], "production");
        assert_eq!(merged["Redis_PORT"], "6379");
        assert_eq!(merged["HTTP_PORT"], "8888");
        assert_eq!(merged["DEBUG"], "true");
        assert_eq!(merged["EMPTY"], "");
        assert_eq!(merged["PORT"], "3000");
        assert_eq!(merged["OBJ"], "{\"a\":1}");
        assert_eq!(
            warnings,
            ["e.js: env_production.OBJ: an object or array; the variable gets its JSON text"]
        );
    }
}
