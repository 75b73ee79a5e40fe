//! Regular expressions as fluentd compiles them. fluentd is Ruby, so every pattern becomes a
//! Ruby `Regexp` (the Onigmo engine); Oniguruma with its Ruby syntax accepts and refuses the
//! same patterns, so a pattern that passes here also starts in fluentd. Rust's `regex`
//! crate would not do: `(?P<n>…)` is fine there and a syntax error in Ruby, while
//! lookarounds and backreferences are the other way round.

use onig::{Regex, RegexOptions, Syntax};

/// `Regexp.new(source, options)`: the compiled regex, or the engine's reason for refusing it
/// in the form Ruby reports it (`<reason>: /<source>/`).
pub fn ruby_regexp(source: &str, options: RegexOptions) -> Result<Regex, String> {
    Regex::with_options(source, options, Syntax::ruby())
        .map_err(|error| format!("{}: /{source}/", error.description()))
}

/// A value of fluentd's `:regexp` parameter type (`Fluent::Config.regexp_value` in
/// lib/fluent/config/types.rb): compiled as is, unless it starts with `/`. Then it must read
/// `/source/` followed by at most two flag characters, of which `i` (ignore case) and `m`
/// (`.` matches a newline) take effect and others are ignored.
pub fn config_regexp(value: &str) -> Result<Regex, String> {
    let Some(rest) = value.strip_prefix('/') else {
        return ruby_regexp(value, RegexOptions::REGEX_OPTION_NONE);
    };
    // `rest` is what follows the leading slash; its last slash closes the source.
    let closing = rest.rfind('/');
    let (source, flags) = match closing {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        // A single slash is both the opening and the closing one: `/im` is the empty regex.
        None => ("", rest),
    };
    if flags.chars().count() > 2 {
        return Err(format!("invalid regexp: missing right slash: {value}"));
    }
    let mut options = RegexOptions::REGEX_OPTION_NONE;
    if flags.contains('i') {
        options |= RegexOptions::REGEX_OPTION_IGNORECASE;
    }
    if flags.contains('m') {
        options |= RegexOptions::REGEX_OPTION_MULTILINE;
    }
    ruby_regexp(source, options)
}

/// The exact regex the aggregator's `cert_verifier` builds from `spec.tls.allowedClientNames`
/// (render::fluentd::cert_verifier): the pattern must match the whole common name.
pub fn client_names_regexp(pattern: &str) -> Result<Regex, String> {
    ruby_regexp(
        &format!(r"\A(?:{pattern})\z"),
        RegexOptions::REGEX_OPTION_NONE,
    )
}

/// Whether `text` holds a match of `regex` anywhere (Ruby's `match?`).
pub fn matches(regex: &Regex, text: &str) -> bool {
    regex.find(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_syntax_is_what_counts() {
        // Python-style named groups are a Rust regex feature Ruby refuses.
        assert!(config_regexp("(?P<n>a)").is_err());
        assert!(regex::Regex::new("(?P<n>a)").is_ok());
        // Lookarounds and backreferences are Ruby features Rust refuses.
        assert!(config_regexp(r"(?<=a)b(?<x>c)\k<x>").is_ok());
        let error = config_regexp("(unclosed").err().unwrap_or_default();
        assert_eq!(error, "end pattern with unmatched parenthesis: /(unclosed/");
    }

    #[test]
    fn slashes_and_flags_follow_fluentd() {
        let insensitive = config_regexp("/error/i").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches(&insensitive, "ERROR"));
        let plain = config_regexp("error").unwrap_or_else(|e| panic!("{e}"));
        assert!(!matches(&plain, "ERROR"));
        let dotall = config_regexp("/a.b/m").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches(&dotall, "a\nb"));
        // More than two characters after the last slash: no closing slash for fluentd.
        assert_eq!(
            config_regexp("/var/log/app").err().unwrap_or_default(),
            "invalid regexp: missing right slash: /var/log/app"
        );
        assert!(config_regexp("/foo").is_err());
        // Unknown flags are ignored, and the source in between keeps its slashes.
        let path = config_regexp("/var/log/x").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches(&path, "var/log"));
        assert!(config_regexp("/").is_ok());
        let empty = config_regexp("/im").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches(&empty, "anything"));
    }

    #[test]
    fn allowed_client_names_are_checked_as_wrapped() {
        // Balanced only once wrapped in `\A(?:…)\z`: Ruby compiles the wrapped text.
        assert!(client_names_regexp("a)|(?:b").is_ok());
        assert!(config_regexp("a)|(?:b").is_err());
        let wrapped = client_names_regexp("agent-.*").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches(&wrapped, "agent-1"));
        assert!(!matches(&wrapped, "xagent-1"));
        assert!(client_names_regexp("(?P<n>a)").is_err());
    }
}
