use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One filter: exactly one kind is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
// Summing presence tests is the cheapest one-of in CEL: no list, no comprehension. The rule
// runs once per filter of the enclosing lists, so its price is multiplied by their maxItems.
#[x_kube(validation = kube::core::Rule::new("(has(self.grep) ? 1 : 0) + (has(self.recordTransformer) ? 1 : 0) + (has(self.parser) ? 1 : 0) + (has(self.dedot) ? 1 : 0) == 1").message("a filter sets exactly one of grep, recordTransformer, parser or dedot"))]
pub struct Filter {
    /// Keep or drop records by regular expressions on record keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grep: Option<GrepFilter>,
    /// Set or remove record keys. Values are literal strings; no code is evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_transformer: Option<RecordTransformerFilter>,
    /// Parse a record key as JSON or with a regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser: Option<ParserFilter>,
    /// Replace dots in Kubernetes label and annotation keys, for outputs that treat dots as nesting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedot: Option<DedotFilter>,
}

/// Keeps records whose keys match every `regexp` and none of the `exclude` patterns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct GrepFilter {
    /// Keep a record only if every pattern matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub regexp: Vec<GrepPattern>,
    /// Drop a record if any pattern matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub exclude: Vec<GrepPattern>,
}

/// A record key and a regular expression.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct GrepPattern {
    /// Record key; nested keys as a path such as `$.kubernetes.labels.app`.
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
    /// Regular expression (Ruby syntax).
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: String,
}

/// Sets and removes record keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordTransformerFilter {
    /// Keys to set, with literal string values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<64, 4096>)]
    pub records: BTreeMap<String, String>,
    /// Keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    pub remove_keys: Vec<String>,
}

/// Parses one record key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.format != 'regexp' || has(self.expression)").message("format regexp needs an expression"))]
pub struct ParserFilter {
    /// The key holding the text to parse.
    #[schemars(length(min = 1, max = 256))]
    pub key_name: String,
    /// `json` or `regexp`.
    pub format: ParserFormat,
    /// Regular expression with named captures (Ruby syntax), for format `regexp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub expression: Option<String>,
    /// Keep the original keys next to the parsed ones. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_data: Option<bool>,
    /// Remove `keyName` after parsing. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_key_name_field: Option<bool>,
}

/// Parser formats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ParserFormat {
    Json,
    Regexp,
}

/// Replaces dots in Kubernetes label and annotation keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct DedotFilter {
    /// Replacement for `.`. Default: `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,4}$"), length(max = 4))]
    pub separator: Option<String>,
}
