//! A document as a tree whose nodes remember their line, so the report and errors can point
//! at the field they concern, not just at the document.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One node; `line` is 1-based in the file (0 when the object came from the API server).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

/// A mapping entry: the key's own line is where a field is reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    pub node: Node,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

impl Node {
    pub fn null(line: usize) -> Self {
        Node {
            line,
            value: Value::Null,
        }
    }

    /// The entry for `key` when this is a mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.node)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.value == Value::Null
    }

    /// What kind of value this is, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The node as a scalar string, the way Kubernetes would read a string field written
    /// unquoted (`port: 9200` is the string "9200" to a string field only after quoting, but
    /// the numbers and booleans here are compared, not stored).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }

    fn shift(&mut self, by: usize) {
        self.line += by;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.shift(by)),
            Value::Map(entries) => {
                for entry in entries {
                    entry.line += by;
                    entry.node.shift(by);
                }
            }
            _ => {}
        }
    }
}

/// Parses one YAML document whose first line is line `first_line` of its file.
pub fn parse(text: &str, first_line: usize) -> Result<Node, serde_saphyr::Error> {
    let mut node: Node = serde_saphyr::from_str(text)?;
    node.shift(first_line.saturating_sub(1));
    Ok(node)
}

/// An object as the API server returned it: no lines.
pub fn from_json(value: &serde_json::Value) -> Node {
    let value = match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Seq(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(key, value)| Entry {
                    key: key.clone(),
                    line: 0,
                    node: from_json(value),
                })
                .collect(),
        ),
    };
    Node { line: 0, value }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            line: usize::try_from(spanned.referenced.line()).unwrap_or_default(),
            value: spanned.value,
        })
    }
}

/// A mapping key: any scalar, as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let node = Node::deserialize(deserializer)?;
        node.scalar_text()
            .map(Key)
            .ok_or_else(|| de::Error::custom("a mapping key must be a scalar"))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(node) = seq.next_element::<Node>()? {
            items.push(node);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let node = map.next_value::<Node>()?;
            let key_text = key.value.0;
            if entries.iter().any(|e| e.key == key_text) {
                return Err(de::Error::custom(format!("duplicate key {key_text:?}")));
            }
            entries.push(Entry {
                key: key_text,
                line: usize::try_from(key.referenced.line()).unwrap_or_default(),
                node,
            });
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_lines_in_the_file() {
        let text = "kind: Flow\nspec:\n  match:\n    - select:\n        labels: {app: web}\n";
        let node = parse(text, 10).unwrap();
        let spec = node.entry("spec").unwrap();
        assert_eq!(spec.line, 11);
        let Value::Seq(rules) = &spec.node.get("match").unwrap().value else {
            panic!("match is a list")
        };
        assert_eq!(
            rules[0].line, 13,
            "a list item's mapping starts at its first key"
        );
        let select = rules[0].entry("select").unwrap();
        assert_eq!(select.line, 13);
        assert_eq!(select.node.entry("labels").unwrap().line, 14);
        let app = select.node.get("labels").unwrap().get("app").unwrap();
        assert_eq!(app.as_str(), Some("web"));
        assert_eq!(app.line, 14);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(parse("a: 1\na: 2\n", 1).is_err());
    }
}
