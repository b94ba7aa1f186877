//! YAML ecosystem files (`.yml`, `.yaml`), read as PM2 reads them (js-yaml 4, YAML 1.2
//! core schema) through serde-saphyr: anchors, aliases and merge keys (`<<: *base`) work,
//! duplicate keys are an error (as in js-yaml), only `true`/`false` are booleans.
//!
//! The document is read once into a tree whose every key and value carries its
//! line:column ([`serde_saphyr::Spanned`]); the tree gives both the JSON value the rest of
//! the pipeline works on and an [`Index`] from key paths to positions, so that messages
//! about a YAML file carry `file:line:col` like the JSON5 ones.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

use super::position::{Seg, Target};

/// A 1-based `(line, column)`.
type LineCol = (usize, usize);

/// Positions of the keys and values of a YAML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// path -> (the key's position, when the path ends in a key; the value's position)
    map: HashMap<Vec<Seg>, (Option<LineCol>, LineCol)>,
}

impl Index {
    /// The position of the key or the value at `path`. A key target on a path that ends
    /// in an index (or is empty) gives the value.
    pub fn position(&self, path: &[Seg], target: Target) -> Option<(usize, usize)> {
        let (key, value) = self.map.get(path)?;
        match target {
            Target::Key => key.or(Some(*value)),
            Target::Value => Some(*value),
        }
    }
}

/// A syntax (or structure) error: 1-based position when known, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub position: Option<(usize, usize)>,
    pub message: String,
}

/// Parses a YAML document into a JSON value and the positions of its keys and values.
/// An empty document is `null`.
pub fn parse(text: &str) -> Result<(Value, Index), YamlError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
    };
    let root: Option<Spanned<Node>> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let position = e
                .location()
                .filter(|l| l.line() > 0)
                .map(|l| (l.line() as usize, l.column().max(1) as usize));
            YamlError {
                position,
                message: message_of(&e),
            }
        })?;
    let mut index = Index::default();
    let value = match root {
        None => Value::Null,
        Some(root) => {
            let pos = at(&root);
            index.map.insert(Vec::new(), (None, pos));
            let mut path = Vec::new();
            into_value(root.value, &mut path, &mut index)
        }
    };
    Ok((value, index))
}

/// The error's message without the source snippet serde-saphyr draws and without the
/// position it appends (hotrun puts `file:line:col` in front).
fn message_of(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("").trim().to_string();
    // serde-saphyr ends the message with " at line L column C"; cut that off.
    let cut = match first.rfind(" at line ") {
        Some(i) if first[i..].contains("column") => first[..i].to_string(),
        _ => first,
    };
    // serde-saphyr's advice to its API users is no help to the author of the file.
    let cut = match cut.find(", set DuplicateKeyPolicy") {
        Some(i) => cut[..i].to_string(),
        None => cut,
    };
    let cut = cut.trim_start_matches("error: ").trim().to_string();
    if cut.is_empty() {
        "invalid YAML".to_string()
    } else {
        cut
    }
}

fn at<T>(s: &Spanned<T>) -> (usize, usize) {
    (
        s.referenced.line() as usize,
        s.referenced.column().max(1) as usize,
    )
}

fn into_value(node: Node, path: &mut Vec<Seg>, index: &mut Index) -> Value {
    match node {
        Node::Scalar(v) => v,
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    path.push(Seg::Index(i));
                    index.map.insert(path.clone(), (None, at(&item)));
                    let v = into_value(item.value, path, index);
                    path.pop();
                    v
                })
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                path.push(Seg::Key(k.value.0.clone()));
                // With merge keys the same key can come twice; the first one (the map's
                // own entry, or the first merged source) is the one kept.
                if !map.contains_key(&k.value.0) {
                    index.map.insert(path.clone(), (Some(at(&k)), at(&v)));
                    let value = into_value(v.value, path, index);
                    map.insert(k.value.0, value);
                }
                path.pop();
            }
            Value::Object(map)
        }
    }
}

/// A YAML node with positioned children.
enum Node {
    Scalar(Value),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
}

/// A mapping key as JavaScript sees it: always a string (`1: x` has the key `"1"`).
struct Key(String);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Scalar(
            Number::from_f64(v as f64).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Scalar(
            Number::from_f64(v as f64).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        // Whole floats stay floats in JSON (`2.0`), as JSON.stringify would print `2`:
        // make them integers when exact, so that `instances: 2.0` reads as 2.
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
            return Ok(Node::Scalar(Value::Number((v as i64).into())));
        }
        // NaN and infinities have no JSON form (JSON.stringify gives null).
        Ok(Node::Scalar(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(
            String::from_utf8_lossy(v).into_owned(),
        )))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Key>>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key (a string, number or boolean)")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(Key(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key("null".to_string()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key("null".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }

    const DOC: &str = "# PM2 ecosystem\nx-base: &base\n  instances: 2\n  env:\n    NODE_ENV: production\napps:\n  - name: web\n    <<: *base\n    script: server.js\n    instances: 4\n  - <<: *base\n    name: 'worker'\n    script: \"worker.js\"\n    watch: yes\n";

    #[test]
    fn anchors_merge_keys_and_positions() {
        let (v, index) = parse(DOC).unwrap();
        assert_eq!(
            v["apps"],
            json!([
                {"name": "web", "instances": 4, "env": {"NODE_ENV": "production"}, "script": "server.js"},
                {"name": "worker", "instances": 2, "env": {"NODE_ENV": "production"}, "script": "worker.js", "watch": "yes"},
            ])
        );
        let p = |path: &[Seg], t| index.position(path, t);
        let inst = [key("apps"), Seg::Index(0), key("instances")];
        assert_eq!(p(&inst, Target::Key), Some((10, 5)));
        assert_eq!(p(&inst, Target::Value), Some((10, 16)));
        let name = [key("apps"), Seg::Index(1), key("name")];
        assert_eq!(p(&name, Target::Value), Some((12, 11)));
        assert_eq!(p(&[key("nope")], Target::Key), None);
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = parse("apps:\n  - name: a\n    script: [b\n").unwrap_err();
        assert!(e.position.is_some(), "{e:?}");
        assert!(!e.message.contains('\n'));
        let e = parse("apps:\n  - name: a\n    name: b\n").unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e:?}");
    }

    #[test]
    fn empty_and_scalar_documents() {
        assert_eq!(parse("").unwrap().0, Value::Null);
        assert_eq!(parse("# only a comment\n").unwrap().0, Value::Null);
        assert_eq!(parse("5").unwrap().0, json!(5));
        assert_eq!(
            parse("{1: a, true: b}").unwrap().0,
            json!({"1": "a", "true": "b"})
        );
    }
}
