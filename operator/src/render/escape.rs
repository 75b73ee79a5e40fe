//! Quoting of values in fluentd and fluent-bit configuration, so that no user string can
//! change the structure of what Sluice renders.
//!
//! fluentd (`lib/fluent/config/literal_parser.rb`): inside a double-quoted value `\` escapes
//! the next character (letters other than `r n t f b` are a parse error, symbols stand for
//! themselves) and `#{` starts embedded Ruby. Escaping `\`, `"` and `#` and writing line
//! breaks as `\n` therefore leaves no way out of the string and no interpolation.
//! Hash and array parameters take JSON; there `#` is written as `\u0023` so the config
//! parser's comment detection inside JSON can never trigger.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

/// A fluentd double-quoted string literal holding exactly `value`.
pub fn fluentd_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '#' => out.push_str("\\#"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{08}' => out.push_str("\\b"),
            // Other control characters are legal inside the string but make the rendered
            // text hard to read; `.` in the config parser matches them, so they pass as is.
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON string with `#` escaped, for fluentd array and hash parameters.
fn json_string(value: &str, out: &mut String) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '#' => out.push_str("\\u0023"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A fluentd `:array` parameter value as one-line JSON.
pub fn fluentd_array<'a>(values: impl IntoIterator<Item = &'a String>) -> String {
    let mut out = String::from("[");
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(value, &mut out);
    }
    out.push(']');
    out
}

/// A fluentd `:hash` parameter value as one-line JSON.
pub fn fluentd_hash(values: &BTreeMap<String, String>) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(key, &mut out);
        out.push(':');
        json_string(value, &mut out);
    }
    out.push('}');
    out
}

static DNS_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$").unwrap_or_else(|_| unreachable!())
});
static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .unwrap_or_else(|_| unreachable!())
});
static PARAM_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$").unwrap_or_else(|_| unreachable!())
});
static SECRET_FILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$").unwrap_or_else(|_| unreachable!())
});

/// A Kubernetes namespace or container name (RFC 1123 label): safe in path globs, tags and
/// comments.
pub fn is_dns_label(value: &str) -> bool {
    DNS_LABEL.is_match(value)
}

/// A Kubernetes object name (RFC 1123 subdomain).
pub fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && DNS_SUBDOMAIN.is_match(value)
}

/// A name usable as a fluentd parameter key (e.g. a Loki label or record key we write as a
/// key). Anything else is left out by the renderer.
pub fn is_param_key(value: &str) -> bool {
    PARAM_KEY.is_match(value)
}

/// A file name under the secrets directory that can sit inside a Ruby single-quoted string.
pub fn is_secret_file_name(value: &str) -> bool {
    SECRET_FILE.is_match(value) && value != "." && value != ".."
}

/// `value` if it fully matches `pattern`, else `default`: for the few scalar spec fields
/// (sizes, durations) written unquoted, which the CRD schema already constrains.
pub fn checked<'a>(value: Option<&'a str>, pattern: &Regex, default: &'a str) -> &'a str {
    match value {
        Some(v) if pattern.is_match(v) => v,
        _ => default,
    }
}

/// Text fit for a `#` comment line: object names pass, anything else is replaced.
pub fn comment_text(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/' | '_' | ' ' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Escapes Ruby/Onigmo regular-expression metacharacters so `value` matches literally.
pub fn ruby_regex_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        } else if c.is_ascii() {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fluentd_string_escapes_quote_backslash_interpolation_and_newlines() {
        assert_eq!(fluentd_string("a\"b\\c#{x}\nd"), r#""a\"b\\c\#{x}\nd""#);
    }

    #[test]
    fn json_values_hide_hash_signs() {
        let map = BTreeMap::from([("a#".to_owned(), "\"}\n".to_owned())]);
        assert_eq!(fluentd_hash(&map), r#"{"a\u0023":"\"}\u000a"}"#);
        assert_eq!(
            fluentd_array(["x".to_owned(), "y]".to_owned()].iter()),
            r#"["x","y]"]"#
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(is_dns_label("team-a"));
        assert!(!is_dns_label("team_a"));
        assert!(!is_dns_label("a*b"));
        assert!(is_dns_subdomain("web.v1"));
        assert!(!is_param_key("a b"));
        assert!(!is_secret_file_name("../x"));
        assert!(!is_secret_file_name("a'b"));
    }
}
