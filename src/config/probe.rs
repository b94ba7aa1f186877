//! `readiness_probe` and `liveness_probe` (hotrun's keys, camelCase too): an object with one check,
//! `http: '/path'`, `tcp: true` or `exec: 'command'`, and `period`, `timeout`, `failure_threshold`,
//! `initial_delay` (Kubernetes' names; times in milliseconds). Each setting is checked at
//! its own file:line:column.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::ConfigError;
use super::fields::Fields;
use super::position::{Seg, Target};
use super::units::{self, show};
use crate::probe::{Check, ProbePlan};

/// The settings of a probe, with their camelCase forms.
const SETTINGS: &[(&str, &str)] = &[
    ("http", "http"),
    ("tcp", "tcp"),
    ("exec", "exec"),
    ("period", "period"),
    ("timeout", "timeout"),
    ("failure_threshold", "failureThreshold"),
    ("initial_delay", "initialDelay"),
];

/// The probe under the key `canon`, if set.
pub fn probe_of(f: &Fields, canon: &str) -> Result<Option<ProbePlan>, ConfigError> {
    let Some((key, v)) = f.get(canon) else {
        return Ok(None);
    };
    let Value::Object(obj) = v else {
        return Err(f.bad(
            key,
            v,
            "an object such as { http: '/health' } or { tcp: true }",
        ));
    };
    let at = Probe { f, key, obj };
    for (name, _) in obj {
        if !SETTINGS.iter().any(|(s, camel)| name == s || name == camel) {
            let known: Vec<&str> = SETTINGS.iter().map(|(s, _)| *s).collect();
            return Err(at.error(
                name,
                Target::Key,
                &format!(" is not a probe setting (settings: {})", known.join(", ")),
            ));
        }
    }
    let check = at.check()?;
    Ok(Some(ProbePlan {
        check,
        period: at.ms("period", 1000, 1)?,
        timeout: at.ms("timeout", 1000, 1)?,
        failure_threshold: at.threshold()?,
        initial_delay: at.ms("initial_delay", 0, 0)?,
    }))
}

/// `canary: { hold: MS }`: how long a reload's first replaced slot is held.
pub fn canary_of(f: &Fields) -> Result<Option<Duration>, ConfigError> {
    let Some((key, v)) = f.get("canary") else {
        return Ok(None);
    };
    let expected = "an object such as { hold: 30000 } (milliseconds)";
    let Value::Object(obj) = v else {
        return Err(f.bad(key, v, expected));
    };
    if let Some(name) = obj.keys().find(|k| *k != "hold") {
        let mut path = f.path_of(key);
        path.push(Seg::Key(name.clone()));
        let subject = format!("{key}.{name}");
        return Err(ConfigError::invalid(f.msg_at(
            &path,
            Target::Key,
            &subject,
            " is not a canary setting (settings: hold)",
        )));
    }
    match obj.get("hold").map(|h| (h, units::parse_ms(h))) {
        Some((_, Ok(ms))) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        Some((h, _)) => {
            let mut path = f.path_of(key);
            path.push(Seg::Key("hold".into()));
            let detail = format!(
                " must be a number of milliseconds, 1 or more (got {})",
                show(h)
            );
            let subject = format!("{key}.hold");
            Err(ConfigError::invalid(f.msg_at(
                &path,
                Target::Value,
                &subject,
                &detail,
            )))
        }
        None => Err(f.bad(key, v, expected)),
    }
}

/// One probe object and where it is.
struct Probe<'a> {
    f: &'a Fields<'a>,
    key: &'a str,
    obj: &'a Map<String, Value>,
}

impl Probe<'_> {
    /// The setting `canon` as written (snake_case or camelCase), and its value.
    fn get(&self, canon: &str) -> Option<(&str, &Value)> {
        let camel = SETTINGS
            .iter()
            .find(|(s, _)| *s == canon)
            .map(|(_, c)| *c)?;
        [canon, camel]
            .into_iter()
            .find_map(|k| self.obj.get_key_value(k))
            .map(|(k, v)| (k.as_str(), v))
            .filter(|(_, v)| !v.is_null())
    }

    /// An error at the setting `name` of the probe, named `key.name`.
    fn error(&self, name: &str, target: Target, detail: &str) -> ConfigError {
        let mut path = self.f.path_of(self.key);
        path.push(Seg::Key(name.to_string()));
        let subject = format!("{}.{name}", self.key);
        ConfigError::invalid(self.f.msg_at(&path, target, &subject, detail))
    }

    fn bad(&self, name: &str, v: &Value, expected: &str) -> ConfigError {
        let detail = format!(" must be {expected} (got {})", show(v));
        self.error(name, Target::Value, &detail)
    }

    /// `http: '/path'` or `tcp: true`: exactly one.
    fn check(&self) -> Result<Check, ConfigError> {
        let given: Vec<&str> = ["http", "tcp", "exec"]
            .into_iter()
            .filter_map(|k| self.get(k).map(|(name, _)| name))
            .collect();
        if let [_, second, ..] = given[..] {
            return Err(self.error(
                second,
                Target::Key,
                ": a probe has one check: http, tcp or exec",
            ));
        }
        if let Some((name, v)) = self.get("exec") {
            return match v {
                Value::String(cmd) if !cmd.trim().is_empty() => Ok(Check::Exec {
                    command: cmd.clone(),
                }),
                _ => Err(self.bad(name, v, "a command (run with sh -c)")),
            };
        }
        match (self.get("http"), self.get("tcp")) {
            (Some((name, v)), _) => match v {
                Value::String(path) if path.starts_with('/') => {
                    Ok(Check::Http { path: path.clone() })
                }
                _ => Err(self.bad(name, v, "a path starting with / (such as '/health')")),
            },
            (None, Some((name, v))) => match v {
                Value::Bool(true) => Ok(Check::Tcp),
                _ => Err(self.bad(name, v, "true")),
            },
            (None, None) => Err(ConfigError::invalid(self.f.msg(
                self.key,
                Target::Value,
                " needs a check: http: '/health', tcp: true or exec: 'command'",
            ))),
        }
    }

    /// A time setting in milliseconds, at least `least`.
    fn ms(&self, canon: &str, default: u64, least: u64) -> Result<Duration, ConfigError> {
        let Some((name, v)) = self.get(canon) else {
            return Ok(Duration::from_millis(default));
        };
        match units::parse_ms(v) {
            Ok(n) if n >= least => Ok(Duration::from_millis(n)),
            _ if least > 0 => Err(self.bad(name, v, "a number of milliseconds, 1 or more")),
            Err(e) => Err(self.bad(name, v, e)),
            Ok(n) => Ok(Duration::from_millis(n)),
        }
    }

    fn threshold(&self) -> Result<u32, ConfigError> {
        let Some((name, v)) = self.get("failure_threshold") else {
            return Ok(3);
        };
        match units::parse_count(v) {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(self.bad(name, v, "a whole number, 1 or more")),
        }
    }
}
