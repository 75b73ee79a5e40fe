//! URLs as Ruby's `URI.parse` reads them (`URI::RFC3986_Parser`, the default parser of the
//! aggregator's Ruby 3.3), which is what the pinned plugins call on `url`, `endpoint`,
//! `hosts`, `brokers` and the Splunk collector address. Written from RFC 3986's grammar with
//! the parser's own deviations: the input must be ASCII, the host may be empty, the query is
//! anything up to `#`, the port is any run of digits (no range check: that is left to the
//! connection, so a port above 65535 is refused separately by the callers). The `url` crate
//! is no substitute: it follows the WHATWG URL standard, which repairs what Ruby refuses
//! (`http://exa mple`, `\` as `/`, unescaped `{`) and so would pass values that fail.

use std::net::Ipv6Addr;

/// The parts of an absolute URI the callers look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RubyUri<'a> {
    pub scheme: &'a str,
    pub userinfo: Option<&'a str>,
    /// `None` without an authority (`mailto:x`); `Some("")` for `http://`.
    pub host: Option<&'a str>,
    /// The digits after `:`; `Some("")` for `http://h:` (Ruby then uses the default port).
    pub port: Option<&'a str>,
}

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

fn is_sub_delim(c: char) -> bool {
    matches!(
        c,
        '!' | '$' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | ';' | '='
    )
}

/// Checks that `part` consists of `%XX` escapes and characters `allowed` accepts.
fn escaped(part: &str, what: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    let mut chars = part.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex = (chars.next(), chars.next());
            if !matches!(hex, (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
            {
                return Err(format!(
                    "'%' in the {what} is not followed by two hex digits"
                ));
            }
        } else if !allowed(c) {
            return Err(format!("{c:?} is not allowed in the {what}"));
        }
    }
    Ok(())
}

fn is_pchar(c: char) -> bool {
    is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@'
}

/// An IP literal between `[` and `]`: an IPv6 address (RFC 3986 `IPv6address`, which is what
/// `Ipv6Addr` reads, embedded IPv4 included, zone identifiers excluded in both) or
/// `IPvFuture` (`v`, hex digits, `.`, then unreserved, sub-delims or `:`).
fn ip_literal(inner: &str) -> Result<(), String> {
    if let Some(rest) = inner.strip_prefix('v')
        && let Some((version, address)) = rest.split_once('.')
    {
        let ok = !version.is_empty()
            && version.chars().all(|c| c.is_ascii_hexdigit())
            && !address.is_empty()
            && address
                .chars()
                .all(|c| is_unreserved(c) || is_sub_delim(c) || c == ':');
        return if ok {
            Ok(())
        } else {
            Err(format!("[{inner}] is not an IP literal"))
        };
    }
    inner
        .parse::<Ipv6Addr>()
        .map(|_| ())
        .map_err(|_| format!("[{inner}] is not an IPv6 address"))
}

/// Splits `authority` into userinfo, host and port the way the parser's single regex does:
/// userinfo and reg-name cannot hold `@` or `:` (userinfo can hold `:`), so the first `@` ends
/// the userinfo and the first `:` after a reg-name starts the port.
fn authority(authority: &str) -> Result<(Option<&str>, &str, Option<&str>), String> {
    let (userinfo, rest) = match authority.split_once('@') {
        Some((userinfo, rest)) => {
            escaped(userinfo, "user information", |c| {
                is_unreserved(c) || is_sub_delim(c) || c == ':'
            })?;
            (Some(userinfo), rest)
        }
        None => (None, authority),
    };
    let (host, port) = if let Some(literal) = rest.strip_prefix('[') {
        let Some((inner, after)) = literal.split_once(']') else {
            return Err("'[' opens an IP literal that ']' does not close".to_owned());
        };
        ip_literal(inner)?;
        let host = &rest[..inner.len() + 2];
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{after:?} follows the IP literal")),
            },
        }
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        escaped(host, "host", |c| is_unreserved(c) || is_sub_delim(c))?;
        (host, port)
    };
    if let Some(port) = port
        && !port.chars().all(|c| c.is_ascii_digit())
    {
        return Err(format!("port {port:?} is not a number"));
    }
    Ok((userinfo, host, port))
}

/// Parses an absolute URI as `URI.parse` does, or says why it raises
/// `URI::InvalidURIError`. Relative references (no scheme) are refused too: every caller
/// needs a scheme, and the plugins then fail on the missing one.
pub fn parse(uri: &str) -> Result<RubyUri<'_>, String> {
    if !uri.is_ascii() {
        return Err("URI must be ascii only".to_owned());
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err("no scheme".to_owned());
    };
    let mut scheme_chars = scheme.chars();
    if !scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!("{scheme:?} is not a scheme"));
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (rest, None),
    };
    if let Some(fragment) = fragment {
        escaped(fragment, "fragment", |c| {
            is_pchar(c) || c == '/' || c == '?'
        })?;
    }
    // The query is `[^#]*`: anything goes.
    let hier = rest.split_once('?').map_or(rest, |(hier, _)| hier);
    let (userinfo, host, port, path) = match hier.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            let (userinfo, host, port) = authority(&after[..end])?;
            (userinfo, Some(host), port, &after[end..])
        }
        None => (None, None, None, hier),
    };
    escaped(path, "path", |c| is_pchar(c) || c == '/')?;
    Ok(RubyUri {
        scheme,
        userinfo,
        host,
        port,
    })
}

/// A port a TCP connection can use, when one is given.
pub fn check_port(port: Option<&str>) -> Result<(), String> {
    match port {
        Some(port) if !port.is_empty() && port.parse::<u16>().is_err() => {
            Err(format!("port {port} is above 65535"))
        }
        _ => Ok(()),
    }
}

/// A URL to an HTTP server: what Ruby parses into `URI::HTTP`/`URI::HTTPS` with a host.
pub fn http_url(url: &str) -> Result<RubyUri<'_>, String> {
    let parsed = parse(url).map_err(|reason| format!("Ruby's URI refuses it: {reason}"))?;
    if !matches!(
        parsed.scheme.to_ascii_lowercase().as_str(),
        "http" | "https"
    ) {
        return Err("the scheme must be http or https".to_owned());
    }
    if parsed.host.is_none_or(str::is_empty) {
        return Err("it names no host".to_owned());
    }
    check_port(parsed.port)?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::{http_url, parse};

    #[test]
    fn reads_what_ruby_reads() {
        for uri in [
            "http://example",
            "https://user:p%41ss@es.example:9200/prefix/?q=a b|c",
            "http://[::1]:3100",
            "http://[v1.x:y]",
            "http://127.0.0.1",
            "http://h:/p",
            "http://",
            "kafka://broker:9092",
            "mailto:x@y",
            "http://h/p#frag/?",
        ] {
            assert!(parse(uri).is_ok(), "{uri}: {:?}", parse(uri));
        }
        for uri in [
            "http://exa mple",
            "http://[bad",
            "http://[::1",
            "http://[g::1]",
            "http://h:80a",
            "http://a@b@c",
            "http://h/{x}",
            "http://h/%zz",
            "http://h/p#a#b",
            "http://h\\x",
            "http://hé",
            "1http://h",
            "no-scheme",
            "http://h:1:2",
        ] {
            assert!(parse(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn http_urls_need_a_host_and_a_real_port() {
        assert!(http_url("http://h:65535").is_ok());
        assert!(http_url("http://h:65536").is_err());
        assert!(http_url("http://").is_err());
        assert!(http_url("ftp://h").is_err());
    }
}
