//! Where a key or value sits in the ecosystem file, as `line:column`.
//!
//! No hand-written parser: the source text is deserialized again by json5 with a
//! [`DeserializeSeed`] that walks maps and arrays along the wanted path (skipping every
//! other entry with [`IgnoredAny`]) and fails on purpose when it reaches the target. json5
//! attaches to any error the position of the innermost key or value being read, so the
//! error's `position()` is the location. Keys fail from the key visitor (json5 then points
//! at the key), values from the value seed (json5 points at the value's first character).
//!
//! [`Origin`] turns a path into the `file:line:col: ` prefix of messages; for files that
//! were evaluated with node there is no text, and the prefix names the key path instead.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Renders `apps[0].env.PORT`.
pub fn path_display(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push_str("(top level)");
    }
    out
}

/// Point at the key itself or at its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Key,
    Value,
}

const MARKER: &str = "\u{1}hotrun-position-marker\u{1}";

/// 1-based `(line, column)` of the key or value at `path` in a JSON5 `text`, if it exists.
/// `Target::Key` on a path ending in an index (or an empty path) points at the value.
pub fn locate(text: &str, path: &[Seg], target: Target) -> Option<(usize, usize)> {
    let mut de = json5::Deserializer::from_str(text);
    match (Walk { path, target }).deserialize(&mut de) {
        Err(e) if e.to_string().contains(MARKER) => {
            e.position().map(|p| (p.line + 1, p.column + 1))
        }
        _ => None,
    }
}

struct Walk<'a> {
    path: &'a [Seg],
    target: Target,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.path.split_first() {
            None => d.deserialize_any(Hit),
            Some((Seg::Key(key), rest)) => d.deserialize_map(MapWalk {
                key,
                rest,
                target: self.target,
            }),
            Some((Seg::Index(index), rest)) => d.deserialize_seq(SeqWalk {
                index: *index,
                rest,
                target: self.target,
            }),
        }
    }
}

struct MapWalk<'a> {
    key: &'a str,
    rest: &'a [Seg],
    target: Target,
}

impl<'de> Visitor<'de> for MapWalk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let key_is_target = self.rest.is_empty() && self.target == Target::Key;
        while let Some(found) = map.next_key_seed(KeyCheck {
            wanted: self.key,
            fail: key_is_target,
        })? {
            if found {
                map.next_value_seed(Walk {
                    path: self.rest,
                    target: self.target,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct SeqWalk<'a> {
    index: usize,
    rest: &'a [Seg],
    target: Target,
}

impl<'de> Visitor<'de> for SeqWalk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Walk {
            path: self.rest,
            target: self.target,
        })?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// Reads one key; `Ok(true)` when it is the wanted one, or fails there when `fail`.
struct KeyCheck<'a> {
    wanted: &'a str,
    fail: bool,
}

impl<'de> DeserializeSeed<'de> for KeyCheck<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyCheck<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        if v == self.wanted {
            if self.fail {
                return Err(E::custom(MARKER));
            }
            return Ok(true);
        }
        Ok(false)
    }
}

/// Fails on whatever value it is given: the target was reached.
struct Hit;

impl<'de> Visitor<'de> for Hit {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(MARKER)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(MARKER))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(MARKER))
    }
}

/// Where positions come from.
#[derive(Debug, Clone)]
pub enum Located {
    /// The JSON5 text the values were read from (JS prefix blanked out).
    Json5(String),
    /// A YAML document's index of positions.
    Yaml(super::yaml::Index),
}

/// The file being resolved, as messages name it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The path as shown to the user (relative to the working folder when under it).
    pub display: String,
    /// How to find positions; `None` when the file was evaluated with node and positions
    /// are unknown.
    pub text: Option<Located>,
}

impl Origin {
    /// `file:line:col` of the key or value at `path`, or `None` without positions.
    pub fn position(&self, path: &[Seg], target: Target) -> Option<(usize, usize)> {
        match self.text.as_ref()? {
            Located::Json5(t) => locate(t, path, target),
            Located::Yaml(index) => index.position(path, target),
        }
    }

    /// A message about the key or value at `path`.
    ///
    /// With positions: `file:line:col: {subject}{detail}`, where `subject` defaults to the
    /// last key of the path. Without: `file: {apps[0].key}{detail}`.
    pub fn msg(&self, path: &[Seg], target: Target, subject: Option<&str>, detail: &str) -> String {
        match self.position(path, target) {
            Some((line, col)) => {
                let subject = match subject {
                    Some(s) => s.to_string(),
                    None => match path.last() {
                        Some(Seg::Key(k)) => k.clone(),
                        _ => path_display(path),
                    },
                };
                format!("{}:{line}:{col}: {subject}{detail}", self.display)
            }
            None => format!("{}: {}{detail}", self.display, path_display(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }

    const DOC: &str = "// header comment\n{\n  apps: [\n    {\n      name: 'a', // first\n      instances: 'three',\n    },\n    { script: \"b.js\", 'env': { PORT: 0x10 } },\n  ],\n}\n";

    #[test]
    fn finds_keys_and_values() {
        let apps0 = vec![key("apps"), Seg::Index(0), key("instances")];
        assert_eq!(locate(DOC, &apps0, Target::Key), Some((6, 7)));
        assert_eq!(locate(DOC, &apps0, Target::Value), Some((6, 18)));
        let port = vec![key("apps"), Seg::Index(1), key("env"), key("PORT")];
        assert_eq!(locate(DOC, &port, Target::Key), Some((8, 32)));
        assert_eq!(locate(DOC, &port, Target::Value), Some((8, 38)));
        // An element of an array: the value (its opening brace).
        assert_eq!(
            locate(DOC, &[key("apps"), Seg::Index(1)], Target::Key),
            Some((8, 5))
        );
        // Quoted key.
        let env = vec![key("apps"), Seg::Index(1), key("env")];
        assert_eq!(locate(DOC, &env, Target::Key), Some((8, 23)));
        // The whole array.
        assert_eq!(locate(DOC, &[key("apps")], Target::Value), Some((3, 9)));
    }

    #[test]
    fn missing_paths_have_no_position() {
        assert_eq!(locate(DOC, &[key("nope")], Target::Key), None);
        assert_eq!(
            locate(DOC, &[key("apps"), Seg::Index(5)], Target::Value),
            None
        );
        assert_eq!(locate(DOC, &[key("apps"), key("x")], Target::Value), None);
        assert_eq!(locate("{ a: ", &[key("a")], Target::Value), None);
    }

    #[test]
    fn origin_messages() {
        let o = Origin {
            display: "e.json5".into(),
            text: Some(Located::Json5(DOC.into())),
        };
        let p = vec![key("apps"), Seg::Index(0), key("instances")];
        assert_eq!(
            o.msg(&p, Target::Value, None, " must be a number"),
            "e.json5:6:18: instances must be a number"
        );
        let o = Origin {
            display: "e.js".into(),
            text: None,
        };
        assert_eq!(
            o.msg(&p, Target::Value, None, " must be a number"),
            "e.js: apps[0].instances must be a number"
        );
    }
}
