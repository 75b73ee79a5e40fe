//! Onigmo's look-behind rules (regcomp.c of Onigmo 6.2.0, which Ruby 3.3 bundles), for
//! patterns Oniguruma has already compiled. Oniguruma 6.9 runs variable-length look-behind;
//! Onigmo refuses it with "invalid pattern in look-behind", so the rules are re-applied here
//! on a parse of the source that keeps just what they need: each node's width in characters
//! and its kind. The parser trusts that the source is valid (Oniguruma said so): it never
//! fails, it only has to see groups, quantifiers and escapes where Onigmo sees them.

/// A parsed node, shaped like Onigmo's parse tree: `(?:…)` is no node of its own, a branch
/// of one element is that element, and `(?i)` wraps the rest of its group.
#[derive(Debug, Clone)]
enum Node {
    Empty,
    /// Literal characters, classes, `.`, `\d` and friends: `n` characters wide.
    Chars(usize),
    List(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        target: Box<Node>,
        lower: u32,
        upper: Option<u32>,
    },
    /// `(…)` or `(?<name>…)`; `named` tells a plain group, which stops capturing once the
    /// pattern has a named group (Ruby's default).
    Capture {
        named: bool,
        target: Box<Node>,
    },
    /// Other enclosures: `(?i:…)`, `(?>…)`, `(?~…)`, `(?(cond)…)`.
    Enclose(Enclose, Box<Node>),
    /// Zero-width anchors without a body; `allowed` is whether Onigmo's look-behind masks
    /// (`ALLOWED_ANCHOR_IN_LB`, the same for both signs) list it.
    Anchor {
        allowed: bool,
    },
    LookAhead(Box<Node>),
    LookBehind {
        negative: bool,
        target: Box<Node>,
    },
    Backref,
    /// `\g<…>`: a subexpression call, by group number or name (`None`: the whole pattern).
    Call(Option<CallTarget>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Enclose {
    Option,
    Atomic,
    Absent,
    Condition,
}

#[derive(Debug, Clone)]
enum CallTarget {
    Number(usize),
    Name(String),
}

/// Why a look-behind has no single width (`GET_CHAR_LEN_VARLEN` and
/// `GET_CHAR_LEN_TOP_ALT_VARLEN` in regcomp.c).
#[derive(Debug, PartialEq)]
enum Width {
    Variable,
    TopAlternatives,
}

/// Onigmo's verdict on every look-behind of `source`: `Err` with Ruby's message when one of
/// them would make `Regexp.new` raise.
pub fn check(source: &str, extended: bool) -> Result<(), String> {
    let mut parser = Parser {
        chars: source.chars().collect(),
        at: 0,
        extended,
        captures: Vec::new(),
        depth: 0,
        too_deep: false,
    };
    let tree = parser.alternation();
    if parser.too_deep {
        return Err(format!("groups nested deeper than {MAX_DEPTH}"));
    }
    let context = Context {
        named_only: parser.captures.iter().any(|(name, _)| name.is_some()),
        captures: parser.captures,
    };
    if context.look_behinds_valid(&tree) {
        Ok(())
    } else {
        Err("invalid pattern in look-behind".to_string())
    }
}

/// Nesting the check follows before it gives up (recursion depth: Oniguruma itself allows
/// 4096 levels, more than a worker thread's stack takes here). No real pattern comes close.
const MAX_DEPTH: usize = 100;

struct Parser {
    /// Current group nesting; past [`MAX_DEPTH`] parsing stops and sets `too_deep`.
    depth: usize,
    too_deep: bool,
    chars: Vec<char>,
    at: usize,
    extended: bool,
    /// Capture groups in number order: name and body, filled in when the group closes.
    captures: Vec<(Option<String>, Node)>,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.at += 1;
        }
        c
    }

    fn eat(&mut self, text: &str) -> bool {
        let wanted: Vec<char> = text.chars().collect();
        if self.chars[self.at..].starts_with(&wanted) {
            self.at += wanted.len();
            true
        } else {
            false
        }
    }

    /// Up to the closing `)` of the current group (not consumed) or the end.
    fn alternation(&mut self) -> Node {
        let mut branches = vec![self.branch()];
        while self.peek() == Some('|') {
            self.at += 1;
            branches.push(self.branch());
        }
        if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alt(branches)
        }
    }

    fn branch(&mut self) -> Node {
        let mut items = Vec::new();
        loop {
            if self.extended {
                self.skip_extended_space();
            }
            match self.peek() {
                None | Some('|') | Some(')') => break,
                _ => {}
            }
            match self.atom() {
                Atom::Node(node) => {
                    let node = self.quantified(node);
                    items.push(node);
                }
                Atom::Nothing => {}
                Atom::RestOfGroup(node) => {
                    // `(?i)` took the rest of the group, alternatives included.
                    items.push(node);
                    break;
                }
            }
        }
        match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::List(items),
        }
    }

    fn skip_extended_space(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.at += 1;
            } else if c == '#' {
                while let Some(c) = self.next() {
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    fn atom(&mut self) -> Atom {
        let Some(c) = self.next() else {
            return Atom::Nothing;
        };
        let node = match c {
            '(' => return self.group(),
            '[' => {
                self.class();
                Node::Chars(1)
            }
            '\\' => self.escape(),
            '^' | '$' => Node::Anchor { allowed: true },
            _ => Node::Chars(1),
        };
        Atom::Node(node)
    }

    /// Everything after `[`, up to its `]`; nested classes and POSIX brackets included.
    fn class(&mut self) {
        self.eat("^");
        // A `]` right at the start is a literal.
        self.eat("]");
        while let Some(c) = self.next() {
            match c {
                '\\' => {
                    self.next();
                }
                '[' => self.class(),
                ']' => return,
                _ => {}
            }
        }
    }

    fn escape(&mut self) -> Node {
        let Some(c) = self.next() else {
            return Node::Chars(1);
        };
        match c {
            'A' | 'b' | 'B' | 'G' | 'K' => Node::Anchor { allowed: true },
            'z' | 'Z' => Node::Anchor { allowed: false },
            // Both expand to an atomic group in Onigmo's parser.
            'R' | 'X' => Node::Enclose(Enclose::Atomic, Box::new(Node::Chars(1))),
            'k' if matches!(self.peek(), Some('<' | '\'')) => {
                self.delimited_name();
                Node::Backref
            }
            'g' if matches!(self.peek(), Some('<' | '\'')) => {
                let name = self.delimited_name();
                let target = match name.parse::<i64>() {
                    Ok(0) => None,
                    // `\g<-1>` counts back from the groups opened so far.
                    Ok(number) if number < 0 => {
                        let absolute = self.captures.len() as i64 + 1 + number;
                        Some(CallTarget::Number(usize::try_from(absolute).unwrap_or(0)))
                    }
                    Ok(number) => Some(CallTarget::Number(number as usize)),
                    Err(_) => Some(CallTarget::Name(name)),
                };
                Node::Call(target)
            }
            '1'..='9' => {
                let start = self.at - 1;
                while matches!(self.peek(), Some('0'..='9')) {
                    self.at += 1;
                }
                let digits: String = self.chars[start..self.at].iter().collect();
                let number = digits.parse::<usize>().unwrap_or(usize::MAX);
                if number <= 9 || number <= self.captures.len() {
                    Node::Backref
                } else {
                    // Not a group number: an octal escape of up to three digits, and the
                    // digits after it are literals.
                    self.at = start;
                    let mut octal = 0;
                    while octal < 3 && matches!(self.peek(), Some('0'..='7')) {
                        self.at += 1;
                        octal += 1;
                    }
                    if octal == 0 {
                        self.at += 1;
                    }
                    Node::Chars(1)
                }
            }
            'u' if self.peek() == Some('{') => {
                // Ruby expands `\u{61 62}` to one character per code point.
                self.at += 1;
                let mut text = String::new();
                while let Some(c) = self.next() {
                    if c == '}' {
                        break;
                    }
                    text.push(c);
                }
                Node::Chars(text.split_whitespace().count().max(1))
            }
            'x' | 'p' | 'P' | 'o' if self.peek() == Some('{') => {
                while let Some(c) = self.next() {
                    if c == '}' {
                        break;
                    }
                }
                Node::Chars(1)
            }
            'c' => {
                self.control_target();
                Node::Chars(1)
            }
            'C' | 'M' if self.peek() == Some('-') => {
                self.at += 1;
                self.control_target();
                Node::Chars(1)
            }
            // Hex, octal and \u escapes read their digits as part of one character; the
            // digits left over are literal characters of their own, read by the caller.
            'x' => {
                for _ in 0..2 {
                    if self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                        self.at += 1;
                    }
                }
                Node::Chars(1)
            }
            'u' => {
                for _ in 0..4 {
                    if self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                        self.at += 1;
                    }
                }
                Node::Chars(1)
            }
            '0' => {
                for _ in 0..2 {
                    if matches!(self.peek(), Some('0'..='7')) {
                        self.at += 1;
                    }
                }
                Node::Chars(1)
            }
            _ => Node::Chars(1),
        }
    }

    /// The character after `\c`, `\C-` or `\M-`, itself possibly an escape (`\M-\C-x`).
    fn control_target(&mut self) {
        if self.next() == Some('\\') {
            self.escape();
        }
    }

    /// `<name>` or `'name'` after `\k` / `\g`, without the delimiters.
    fn delimited_name(&mut self) -> String {
        let close = if self.next() == Some('<') { '>' } else { '\'' };
        let mut name = String::new();
        while let Some(c) = self.next() {
            if c == close {
                break;
            }
            name.push(c);
        }
        name
    }

    /// After `(`; consumes up to and including the matching `)`.
    fn group(&mut self) -> Atom {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            // `check` refuses the pattern; skip the rest without recursing.
            self.too_deep = true;
            self.depth -= 1;
            self.at = self.chars.len();
            return Atom::Nothing;
        }
        let atom = self.group_body();
        self.depth -= 1;
        atom
    }

    fn group_body(&mut self) -> Atom {
        let saved_extended = self.extended;
        let node = if self.eat("?#") {
            while let Some(c) = self.next() {
                match c {
                    '\\' => {
                        self.next();
                    }
                    ')' => break,
                    _ => {}
                }
            }
            return Atom::Nothing;
        } else if self.eat("?:") {
            self.body()
        } else if self.eat("?=") || self.eat("?!") {
            Node::LookAhead(Box::new(self.body()))
        } else if self.eat("?<=") {
            Node::LookBehind {
                negative: false,
                target: Box::new(self.body()),
            }
        } else if self.eat("?<!") {
            Node::LookBehind {
                negative: true,
                target: Box::new(self.body()),
            }
        } else if self.eat("?>") {
            Node::Enclose(Enclose::Atomic, Box::new(self.body()))
        } else if self.eat("?~") {
            Node::Enclose(Enclose::Absent, Box::new(self.body()))
        } else if self.eat("?(") {
            while let Some(c) = self.next() {
                if c == ')' {
                    break;
                }
            }
            Node::Enclose(Enclose::Condition, Box::new(self.body()))
        } else if self.peek() == Some('?') && matches!(self.peek_at(1), Some('<' | '\'')) {
            self.at += 1;
            let name = self.delimited_name();
            self.capture(Some(name))
        } else if self.peek() == Some('?') {
            self.at += 1;
            let mut on = true;
            while let Some(c) = self.peek() {
                match c {
                    '-' => on = false,
                    'x' => self.extended = on,
                    ':' | ')' => break,
                    _ => {}
                }
                self.at += 1;
            }
            if self.next() == Some(')') {
                // `(?x)`: the options hold for the rest of the enclosing group, which
                // Onigmo parses as this option node's body.
                let rest = self.alternation();
                self.extended = saved_extended;
                return Atom::RestOfGroup(Node::Enclose(Enclose::Option, Box::new(rest)));
            }
            Node::Enclose(Enclose::Option, Box::new(self.body()))
        } else {
            self.capture(None)
        };
        self.extended = saved_extended;
        Atom::Node(node)
    }

    fn capture(&mut self, name: Option<String>) -> Node {
        let number = self.captures.len() + 1;
        self.captures.push((name.clone(), Node::Empty));
        let body = self.body();
        if let Some(slot) = self.captures.get_mut(number - 1) {
            slot.1 = body.clone();
        }
        Node::Capture {
            named: name.is_some(),
            target: Box::new(body),
        }
    }

    /// A group's alternation and its closing `)`.
    fn body(&mut self) -> Node {
        let node = self.alternation();
        self.eat(")");
        node
    }

    fn quantified(&mut self, mut node: Node) -> Node {
        loop {
            if self.extended {
                self.skip_extended_space();
            }
            let (lower, upper, interval) = match self.peek() {
                Some('*') => (0, None, false),
                Some('+') => (1, None, false),
                Some('?') => (0, Some(1), false),
                Some('{') => match self.interval() {
                    Some((lower, upper, length)) => {
                        self.at += length - 1;
                        (lower, upper, true)
                    }
                    None => return node,
                },
                _ => return node,
            };
            self.at += 1;
            let fixed = interval && upper == Some(lower);
            node = Node::Repeat {
                target: Box::new(node),
                lower,
                upper,
            };
            // A lazy `?` or possessive `+` only changes greediness. Ruby has no possessive
            // intervals, and `{n}?` is `(?:…{n})?` (its syntax sets
            // ONIG_SYN_FIXED_INTERVAL_IS_GREEDY_ONLY): the next turn reads those as
            // quantifiers of their own.
            let modifier = match self.peek() {
                Some('?') => !fixed,
                Some('+') => !interval,
                _ => false,
            };
            if modifier {
                self.at += 1;
            }
        }
    }

    /// `{n}`, `{n,}`, `{,m}` or `{n,m}` at the current position: bounds and length in
    /// characters; `None` when the brace is a literal.
    fn interval(&self) -> Option<(u32, Option<u32>, usize)> {
        let rest: String = self.chars[self.at..].iter().take(32).collect();
        let close = rest.find('}')?;
        let inside = &rest[1..close];
        let number = |text: &str| -> Option<Option<u32>> {
            if text.is_empty() {
                Some(None)
            } else if text.bytes().all(|b| b.is_ascii_digit()) {
                text.parse().ok().map(Some)
            } else {
                None
            }
        };
        let (lower, upper) = match inside.split_once(',') {
            None => {
                let n = number(inside)??;
                (n, Some(n))
            }
            Some((low, high)) => {
                let low = number(low)?;
                let high = number(high)?;
                if low.is_none() && high.is_none() {
                    return None;
                }
                (low.unwrap_or(0), high)
            }
        };
        Some((lower, upper, inside.chars().count() + 2))
    }
}

enum Atom {
    Node(Node),
    Nothing,
    RestOfGroup(Node),
}

struct Context {
    captures: Vec<(Option<String>, Node)>,
    /// Ruby (no `Regexp::CAPTURE_GROUP` option): once a group is named, plain groups do
    /// not capture, so they are no memory nodes in negative look-behind either.
    named_only: bool,
}

impl Context {
    fn look_behinds_valid(&self, node: &Node) -> bool {
        match node {
            Node::LookBehind { negative, target } => {
                self.allowed_in_look_behind(target, *negative)
                    && self.look_behinds_valid(target)
                    && !matches!(self.width(target, 0, &mut Vec::new()), Err(Width::Variable))
            }
            Node::List(items) | Node::Alt(items) => {
                items.iter().all(|item| self.look_behinds_valid(item))
            }
            Node::Repeat { target, .. }
            | Node::Capture { target, .. }
            | Node::Enclose(_, target)
            | Node::LookAhead(target) => self.look_behinds_valid(target),
            Node::Empty | Node::Chars(_) | Node::Anchor { .. } | Node::Backref | Node::Call(_) => {
                true
            }
        }
    }

    /// `check_type_tree` with the `ALLOWED_*_IN_LB` masks: no back-reference, no look-ahead,
    /// no atomic, absent or conditional group, no `\z`/`\Z`, and in negative look-behind
    /// no capture group either. Calls are allowed and not followed.
    fn allowed_in_look_behind(&self, node: &Node, negative: bool) -> bool {
        match node {
            Node::Empty | Node::Chars(_) | Node::Call(_) => true,
            Node::Anchor { allowed } => *allowed,
            Node::Backref | Node::LookAhead(_) => false,
            Node::List(items) | Node::Alt(items) => items
                .iter()
                .all(|item| self.allowed_in_look_behind(item, negative)),
            Node::Repeat { target, .. } => self.allowed_in_look_behind(target, negative),
            Node::Capture { named, target, .. } => {
                let captures = *named || !self.named_only;
                !(negative && captures) && self.allowed_in_look_behind(target, negative)
            }
            Node::Enclose(kind, target) => {
                *kind == Enclose::Option && self.allowed_in_look_behind(target, negative)
            }
            Node::LookBehind { target, .. } => self.allowed_in_look_behind(target, negative),
        }
    }

    /// `get_char_length_tree1`: the node's width in characters. Alternatives of different
    /// widths are only acceptable right at the top of the look-behind (`level` 1), where
    /// Onigmo splits them into one look-behind each.
    fn width(&self, node: &Node, level: usize, calling: &mut Vec<usize>) -> Result<usize, Width> {
        let level = level + 1;
        match node {
            Node::Empty | Node::Anchor { .. } | Node::LookAhead(_) | Node::LookBehind { .. } => {
                Ok(0)
            }
            Node::Chars(n) => Ok(*n),
            Node::List(items) => items.iter().try_fold(0usize, |sum, item| {
                Ok(sum.saturating_add(self.width(item, level, calling)?))
            }),
            Node::Alt(items) => {
                let mut widths = Vec::new();
                for item in items {
                    widths.push(self.width(item, level, calling)?);
                }
                if widths.windows(2).all(|pair| pair[0] == pair[1]) {
                    Ok(widths.first().copied().unwrap_or(0))
                } else if level == 1 {
                    Err(Width::TopAlternatives)
                } else {
                    Err(Width::Variable)
                }
            }
            Node::Repeat {
                target,
                lower,
                upper,
            } => {
                if *upper == Some(*lower) {
                    let one = self.width(target, level, calling)?;
                    Ok(one.saturating_mul(*lower as usize))
                } else {
                    Err(Width::Variable)
                }
            }
            // A plain group that does not capture is no node of its own in Onigmo.
            Node::Capture { named, target } if !named && self.named_only => {
                self.width(target, level - 1, calling)
            }
            Node::Capture { target, .. } => self.width(target, level, calling),
            Node::Enclose(Enclose::Absent, _) => Ok(0),
            Node::Enclose(_, target) => self.width(target, level, calling),
            Node::Backref => Err(Width::Variable),
            Node::Call(target) => {
                let number = match target {
                    None => None,
                    Some(CallTarget::Number(number)) => Some(*number),
                    Some(CallTarget::Name(name)) => self
                        .captures
                        .iter()
                        .rposition(|(named, _)| named.as_deref() == Some(name.as_str()))
                        .map(|index| index + 1),
                };
                // A recursive call (or one to the whole pattern) has no fixed width.
                let Some(number) = number.filter(|number| !calling.contains(number)) else {
                    return Err(Width::Variable);
                };
                let Some((_, body)) = number.checked_sub(1).and_then(|i| self.captures.get(i))
                else {
                    return Err(Width::Variable);
                };
                calling.push(number);
                let width = self.width(body, level, calling);
                calling.pop();
                width
            }
        }
    }
}
