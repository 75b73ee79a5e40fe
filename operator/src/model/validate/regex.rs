//! Regular expressions as fluentd compiles them. fluentd is Ruby, so every pattern becomes a
//! Ruby `Regexp`: Onigmo 6.2 in Ruby 3.3. We compile with Oniguruma 6.9 (the `onig` crate) in
//! its Ruby syntax, which is close to Onigmo but not the same engine: Oniguruma runs
//! variable-length look-behind (`(?<=a+)`) that Onigmo refuses, so Onigmo's look-behind
//! rules are applied on top (`look_behind`). A pattern that passes both starts in fluentd.
//! Rust's `regex` crate would not do: `(?P<n>…)` is fine there and a syntax error in Ruby,
//! while lookarounds and backreferences are the other way round.

use onig::{Regex, RegexOptions, Syntax};

mod look_behind;

/// `Regexp.new(source, options)`: the compiled regex, or the engine's reason for refusing it
/// in the form Ruby reports it (`<reason>: /<source>/`).
pub fn ruby_regexp(source: &str, options: RegexOptions) -> Result<Regex, String> {
    let regex = Regex::with_options(source, options, Syntax::ruby())
        .map_err(|error| format!("{}: /{source}/", error.description()))?;
    let extended = options.contains(RegexOptions::REGEX_OPTION_EXTEND);
    look_behind::check(source, extended).map_err(|reason| format!("{reason}: /{source}/"))?;
    Ok(regex)
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

    /// What Ruby's `Regexp.new` does with each pattern (true: compiles), recorded with
    /// Ruby 3.1.2, whose Onigmo has the look-behind code of Ruby 3.3's (regcomp.c, 6.2.0).
    const ONIGMO_VERDICTS: &[(&str, bool)] = &[
        // Variable repetition has no fixed width.
        (r"(?<=a+)b", false),
        (r"(?<!a*)b", false),
        (r"(?<=a{1,3})b", false),
        (r"(?<=a{,2})b", false),
        (r"(?<=(?:ab)+)c", false),
        (r"(?<=(?:a|b)+)c", false),
        // `{n}` is fixed; `{n}?` is `(?:…{n})?` in Ruby.
        (r"(?<=a{2})b", true),
        (r"(?<=a{0})b", true),
        (r"(?<=a{2}?)b", false),
        // Alternatives of different widths: only right at the top.
        (r"(?<=a|bc)d", true),
        (r"(?<!a|bc)d", true),
        (r"(?<=ab|c|def)g", true),
        (r"(?<=a|)b", true),
        (r"(?<=x(?:a|bc))d", false),
        (r"(?<=(a|bc))d", false),
        (r"(?<=(?i:a|bc))d", false),
        (r"(?<=(?i)a|bc)d", false),
        (r"(?<=(?:a|bc))d", true),
        (r"(?<=x(?:ab|cd))e", true),
        // Captures: fine in positive, refused in negative look-behind unless a named group
        // turned plain groups into non-capturing ones.
        (r"(?<=(a))b", true),
        (r"(?<!(a))b", false),
        (r"(?<n>x)(?<!(a))b", true),
        (r"(?<!(?<m>a))b", false),
        // Node kinds outside the ALLOWED_*_IN_LB masks.
        (r"(?<=(?>a))b", false),
        (r"(?<=(?=a))b", false),
        (r"(?<=(?!a))b", false),
        (r"(?<=\z)b", false),
        (r"(?<=\Z)b", false),
        (r"(?<=\R)b", false),
        (r"(?<=\X)b", false),
        (r"(?<=(?~a))b", false),
        (r"(a)(?<=(?(1)a|b))b", false),
        (r"(?<=(a)\1)b", false),
        (r"(?<=(?<x>a)\k<x>)b", false),
        (r"(?<=$)b", true),
        (r"(?<=^a\b\A\G)b", true),
        (r"(?<=\K)b", true),
        // Nested look-behind has the same rules.
        (r"(?<=(?<=a+))b", false),
        (r"(?<=(?<=a)x)b", true),
        // Calls take their group's width.
        (r"(?<=(?<x>a)\g<x>)b", true),
        (r"(?<=(?<x>a|b)\g<x>)b", true),
        (r"(?<x>a+)(?<=\g<x>)b", false),
        // Escapes, classes and comments are one character each (or none).
        (r"(?<=[ab]\d\p{Alpha}.)b", true),
        (r"(?<=[]a]\]\x41\cA\C-x[[:alpha:]&&[^b]])b", true),
        (r"(?<=x(?#c)y)z", true),
        (r"(?<=a{x})b", true),
        ("(?x)(?<= a \\+ # comment\n b)c", true),
        (r"(?x)(?<=a +)c", false),
        // Elsewhere Ruby and Oniguruma agree on these.
        (r"\K", true),
        (r"(?~abc)", true),
        (r"\X", true),
        (r"\R", true),
        (r"\h", true),
        (r"\o{101}", true),
        (r"\y", true),
        (r"\p{^Alpha}", true),
        (r"(a)(?(1)a|b)", true),
        (r"(?P<n>a)", false),
        (r"(?(1)a|b)", false),
        (r"(?W)a", false),
        (r"(*FAIL)", false),
    ];

    #[test]
    fn patterns_compile_where_ruby_compiles_them() {
        let wrong: Vec<String> = ONIGMO_VERDICTS
            .iter()
            .filter(|(source, compiles)| config_regexp(source).is_ok() != *compiles)
            .map(|(source, compiles)| format!("{source} (Ruby compiles it: {compiles})"))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn look_behind_errors_read_like_ruby() {
        assert_eq!(
            config_regexp("(?<=a+)b").err().unwrap_or_default(),
            "invalid pattern in look-behind: /(?<=a+)b/"
        );
        // Oniguruma alone runs it: the rule is ours.
        let options = RegexOptions::REGEX_OPTION_NONE;
        assert!(Regex::with_options("(?<=a+)b", options, Syntax::ruby()).is_ok());
        // The extended flag given as an option counts like an inline `(?x)`.
        let source = "(?<=a#+\n)b";
        assert!(ruby_regexp(source, RegexOptions::REGEX_OPTION_EXTEND).is_ok());
        assert!(ruby_regexp(source, RegexOptions::REGEX_OPTION_NONE).is_err());
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

    #[test]
    fn patterns_too_deep_or_calling_before_any_group_are_refused_without_a_panic() {
        assert!(config_regexp(r"(?<=\g<-3>)(a)(b)(c)").is_err());
        let deep = format!("{}a{}", "(".repeat(150), ")".repeat(150));
        assert!(config_regexp(&deep).is_err());
        assert!(config_regexp(&format!("{}a{}", "(".repeat(50), ")".repeat(50))).is_ok());
    }
}
