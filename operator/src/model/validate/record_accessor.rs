//! fluentd's record accessor syntax (lib/fluent/plugin_helper/record_accessor.rb), which the
//! grep filter (`key`), the parser filter (`key_name`) and record_transformer
//! (`remove_keys`) apply to keys when fluentd configures them: a key starting with `$.` is a
//! dot path with optional `[index]` parts, one starting with `$[` a bracket path
//! (`$['a.b'][0]`), anything else a plain top-level key. A key fluentd cannot parse stops the
//! aggregator, so it is refused here with fluentd's own message.

/// Checks `key` the way `Accessor.parse_parameter` parses it.
pub fn check(key: &str) -> Result<(), String> {
    if let Some(path) = key.strip_prefix("$.") {
        dot_notation(key, path)
    } else if let Some(path) = key.strip_prefix('$') {
        if path.starts_with('[') {
            bracket_notation(key, path)
        } else {
            Ok(())
        }
    } else {
        Ok(())
    }
}

/// One parsed part of a path: a name, or an array index (which skips the whitespace rule).
enum Part<'a> {
    Name(&'a str),
    Index,
}

fn dot_notation(key: &str, path: &str) -> Result<(), String> {
    let mut fields: Vec<&str> = path.split('.').collect();
    // Ruby's `String#split` drops trailing empty fields: `$.a.` is `a`, `$.` is nothing.
    while fields.last() == Some(&"") {
        fields.pop();
    }
    let mut parts = Vec::new();
    for field in fields {
        if field.contains('[') {
            dot_array_parts(field, key, &mut parts)?;
        } else {
            parts.push(Part::Name(field));
        }
    }
    if parts.is_empty() {
        return Err("empty keys in dot notation".to_owned());
    }
    for part in &parts {
        if let Part::Name(name) = part
            && name.chars().any(is_ruby_space)
        {
            return Err(format!(
                "whitespace character is not allowed in dot notation. Use bracket notation: {name}"
            ));
        }
    }
    Ok(())
}

/// A dot-path field holding `[`: an optional name, then `[index]` parts; text between a `]`
/// and the next `[` is skipped, as fluentd does.
fn dot_array_parts<'a>(field: &'a str, key: &str, parts: &mut Vec<Part<'a>>) -> Result<(), String> {
    let start = field.find('[').unwrap_or_default();
    if start > 0 {
        parts.push(Part::Name(&field[..start]));
    }
    let mut rest = &field[start + 1..];
    let mut in_bracket = true;
    while !rest.is_empty() {
        if in_bracket {
            let Some(close) = rest.find(']') else {
                return Err(format!(
                    "'[' found but ']' not found. Invalid syntax: {key}"
                ));
            };
            index(bracket_content(rest, close), key)?;
            parts.push(Part::Index);
            rest = &rest[close + 1..];
            in_bracket = false;
        } else {
            let Some(open) = rest.find('[') else {
                return Err(format!(
                    "found more characters after ']'. Invalid syntax: {key}"
                ));
            };
            rest = &rest[open + 1..];
            in_bracket = true;
        }
    }
    Ok(())
}

fn bracket_notation(key: &str, path: &str) -> Result<(), String> {
    let mut rest = path;
    let mut parts = 0usize;
    let mut in_bracket = false;
    while !rest.is_empty() {
        if !in_bracket {
            let Some(open) = rest.find('[') else {
                return Err(format!(
                    "found more characters after ']'. Invalid syntax: {key}"
                ));
            };
            rest = &rest[open + 1..];
            in_bracket = true;
            continue;
        }
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"');
        if let Some(quote) = quote {
            // The first `']`, else the first `"]`, closes the name, whichever quote opened it.
            let Some(close) = rest.find("']").or_else(|| rest.find("\"]")) else {
                return Err(format!("Incomplete bracket. Invalid syntax: {key}"));
            };
            if !rest[close..].starts_with(quote) {
                return Err(format!("Mismatched quotes. Invalid syntax: {key}"));
            }
            rest = &rest[close + 2..];
        } else {
            let Some(close) = rest.find(']') else {
                return Err(format!(
                    "'[' found but ']' not found. Invalid syntax: {key}"
                ));
            };
            index(bracket_content(rest, close), rest)?;
            rest = &rest[close + 1..];
        }
        parts += 1;
        in_bracket = false;
    }
    if parts == 0 {
        return Err("empty keys in bracket notation".to_owned());
    }
    Ok(())
}

/// What fluentd takes as the text inside `[…]` ending at `close`: Ruby's `s[0..close-1]`,
/// which for `close == 0` is the whole rest.
fn bracket_content(rest: &str, close: usize) -> &str {
    if close == 0 { rest } else { &rest[..close] }
}

/// An array index, which fluentd converts with Ruby's `Integer()`. Accepted here: an
/// optionally signed decimal (a leading `0` means octal to Ruby, so then octal digits only).
/// Ruby also takes `0x…`, `0b…` and `1_000`; refusing those costs nothing.
fn index(text: &str, context: &str) -> Result<(), String> {
    if text == "]" {
        return Err(format!(
            "missing array index in '[]'. Invalid syntax: {context}"
        ));
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let valid = !digits.is_empty()
        && if digits.len() > 1 && digits.starts_with('0') {
            digits.chars().all(|c| ('0'..='7').contains(&c))
        } else {
            digits.chars().all(|c| c.is_ascii_digit())
        };
    if valid {
        Ok(())
    } else {
        Err(format!("invalid value for Integer(): {text:?}"))
    }
}

/// Ruby's `\s`: space, tab, newline, vertical tab, form feed, carriage return.
fn is_ruby_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r')
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn plain_keys_are_never_parsed() {
        for key in ["message", "a.b", "a[", "$", "$a", "has space"] {
            assert_eq!(check(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn dot_notation_follows_fluentd() {
        for key in [
            "$.a.b",
            "$.a[0]",
            "$.a[0][-1].b",
            "$.a.",
            "$.a..b",
            "$.[0]",
            "$.a[",
        ] {
            assert_eq!(check(key), Ok(()), "{key}");
        }
        let refused = [
            ("$.", "empty keys in dot notation"),
            ("$..", "empty keys in dot notation"),
            (
                "$.a b",
                "whitespace character is not allowed in dot notation. Use bracket notation: a b",
            ),
            (
                "$.a[0",
                "'[' found but ']' not found. Invalid syntax: $.a[0",
            ),
            (
                "$.a[0]x",
                "found more characters after ']'. Invalid syntax: $.a[0]x",
            ),
            (
                "$.a[]",
                "missing array index in '[]'. Invalid syntax: $.a[]",
            ),
            ("$.a[x]", "invalid value for Integer(): \"x\""),
        ];
        for (key, message) in refused {
            assert_eq!(check(key), Err(message.to_owned()), "{key}");
        }
    }

    #[test]
    fn bracket_notation_follows_fluentd() {
        for key in ["$['a.b']", "$[\"a b\"][0]", "$['a']['b']", "$[0]", "$[']"] {
            assert_eq!(check(key), Ok(()), "{key}");
        }
        let refused = [
            ("$[", "empty keys in bracket notation"),
            ("$['a\"]", "Mismatched quotes. Invalid syntax: $['a\"]"),
            ("$['a", "Incomplete bracket. Invalid syntax: $['a"),
            (
                "$['a']b",
                "found more characters after ']'. Invalid syntax: $['a']b",
            ),
            ("$[a]", "invalid value for Integer(): \"a\""),
        ];
        for (key, message) in refused {
            assert_eq!(check(key), Err(message.to_owned()), "{key}");
        }
    }
}
