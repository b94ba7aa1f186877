//! The keys of one app object, sorted by what hotrun does with them (warnings for the
//! ones it ignores or does not know), and typed getters that report bad values at their
//! file:line:column.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::error::ConfigError;
use super::position::{Origin, Seg, Target};
use super::schema::{self, KeyClass, PARSED_NOT_ENFORCED};
use super::units::{self, show};

/// The keys of one app, by canonical name.
pub struct Fields<'a> {
    path: &'a [Seg],
    origin: &'a Origin,
    keys: BTreeMap<&'static str, (&'a str, &'a Value)>,
}

impl<'a> Fields<'a> {
    pub fn get(&self, canon: &str) -> Option<(&'a str, &'a Value)> {
        self.keys.get(canon).copied().filter(|(_, v)| !v.is_null())
    }

    pub fn path_of(&self, written: &str) -> Vec<Seg> {
        let mut p = self.path.to_vec();
        p.push(Seg::Key(written.to_string()));
        p
    }

    /// A message about the key `written` (at its key or its value), named by it.
    pub fn msg(&self, written: &str, target: Target, detail: &str) -> String {
        self.origin
            .msg(&self.path_of(written), target, Some(written), detail)
    }

    /// A message about what is at `path` (inside one of this app's keys), named `subject`.
    pub fn msg_at(&self, path: &[Seg], target: Target, subject: &str, detail: &str) -> String {
        self.origin.msg(path, target, Some(subject), detail)
    }

    /// `KEY must be EXPECTED (got VALUE)` at the value.
    pub fn bad(&self, written: &str, v: &Value, expected: &str) -> ConfigError {
        self.bad_because(written, v, expected, "")
    }

    /// `bad`, with a hint after the value (`: write ... instead`).
    pub fn bad_because(&self, written: &str, v: &Value, expected: &str, hint: &str) -> ConfigError {
        ConfigError::invalid(self.msg(
            written,
            Target::Value,
            &format!(" must be {expected} (got {}){hint}", show(v)),
        ))
    }

    /// Parses the key with `f`, or returns `default` when it is absent.
    pub fn parse<T>(
        &self,
        canon: &str,
        default: T,
        f: impl Fn(&Value) -> Result<T, &'static str>,
    ) -> Result<T, ConfigError> {
        match self.get(canon) {
            None => Ok(default),
            Some((k, v)) => f(v).map_err(|e| self.bad(k, v, e)),
        }
    }

    pub fn ms(&self, canon: &str, default: u64) -> Result<Duration, ConfigError> {
        self.parse(canon, default, units::parse_ms)
            .map(Duration::from_millis)
    }

    pub fn boolean(&self, canon: &str, default: bool) -> Result<bool, ConfigError> {
        self.parse(canon, default, units::parse_bool)
    }

    pub fn string(&self, canon: &str) -> Result<Option<(&'a str, &'a str)>, ConfigError> {
        match self.get(canon) {
            None => Ok(None),
            Some((k, Value::String(s))) if !s.is_empty() => Ok(Some((k, s.as_str()))),
            Some((k, v)) => Err(self.bad(k, v, "a non-empty string")),
        }
    }

    /// A string split like PM2's `args`, or an array of strings (numbers and booleans
    /// are taken as their text).
    pub fn words(&self, canon: &str, expected: &str) -> Result<Vec<String>, ConfigError> {
        match self.get(canon) {
            None => Ok(Vec::new()),
            Some((_, Value::String(s))) => Ok(units::split_args(s)),
            Some((k, Value::Array(items))) => self.list(k, items, expected),
            Some((k, v)) => Err(self.bad(k, v, expected)),
        }
    }

    pub fn list(
        &self,
        written: &str,
        items: &[Value],
        expected: &str,
    ) -> Result<Vec<String>, ConfigError> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Number(_) | Value::Bool(_) => Ok(item.to_string()),
                _ => {
                    let mut p = self.path_of(written);
                    p.push(Seg::Index(i));
                    Err(ConfigError::invalid(self.origin.msg(
                        &p,
                        Target::Value,
                        Some(&format!("{written}[{i}]")),
                        &format!(
                            " must be a string, as {written} must be {expected} (got {})",
                            show(item)
                        ),
                    )))
                }
            })
            .collect()
    }
}

/// Whether a parsed-not-enforced key is switched on (`watch: false` is not).
fn active(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// Sorts the app's keys, warning about those hotrun ignores or does not know.
pub fn classify<'a>(
    origin: &'a Origin,
    path: &'a [Seg],
    obj: &'a Map<String, Value>,
    warnings: &mut Vec<String>,
) -> (Fields<'a>, Vec<(String, &'a str, &'a Value)>) {
    let mut fields = Fields {
        path,
        origin,
        keys: BTreeMap::new(),
    };
    let mut profiles = Vec::new();
    // Visit keys in file order (the map is sorted by name) so warnings follow the file.
    let mut entries: Vec<(&String, &Value)> = obj.iter().collect();
    if origin.text.is_some() {
        entries.sort_by_cached_key(|(k, _)| origin.position(&fields.path_of(k), Target::Key));
    }
    for (k, v) in entries {
        let warn = |warnings: &mut Vec<String>, detail: &str| {
            warnings.push(origin.msg(&fields.path_of(k), Target::Key, Some(k), detail));
        };
        match schema::classify(k) {
            KeyClass::Implemented(canon) => {
                if PARSED_NOT_ENFORCED.contains(&canon) && active(v) {
                    warn(
                        warnings,
                        ": not enforced yet by this hotrun version (parsed and checked only)",
                    );
                }
                match fields.keys.get(canon).map(|(o, _)| *o) {
                    None => {
                        fields.keys.insert(canon, (k, v));
                    }
                    Some(other) => {
                        // Two spellings of one setting: the canonical one wins, else the first.
                        let (kept, dropped) = if k == canon {
                            (k.as_str(), other)
                        } else {
                            (other, k.as_str())
                        };
                        warnings.push(origin.msg(
                            &fields.path_of(dropped),
                            Target::Key,
                            Some(dropped),
                            &format!(": same setting as {kept}; {kept} is used"),
                        ));
                        if k == canon {
                            fields.keys.insert(canon, (k, v));
                        }
                    }
                }
            }
            KeyClass::NotSupported(_) => warn(
                warnings,
                ": known PM2 key, not supported by hotrun; ignored",
            ),
            KeyClass::Profile(name) => profiles.push((name, k.as_str(), v)),
            KeyClass::Unknown(Some(s)) => {
                warn(warnings, &format!(": unknown key; did you mean {s}?"))
            }
            KeyClass::Unknown(None) => warn(warnings, ": unknown key; ignored"),
        }
    }
    (fields, profiles)
}
