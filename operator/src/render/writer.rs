//! A small writer for fluentd's directive syntax. Directive names, arguments and parameter
//! keys come from Sluice's own constants; values are passed in already quoted by
//! [`super::escape`].

pub struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    pub fn new() -> Self {
        Self {
            out: String::with_capacity(4096),
            depth: 0,
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    /// Opens `<name arg>`.
    pub fn open(&mut self, name: &str, arg: Option<&str>) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        if let Some(arg) = arg {
            self.out.push(' ');
            self.out.push_str(arg);
        }
        self.out.push_str(">\n");
        self.depth += 1;
    }

    /// Closes `</name>`.
    pub fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    /// `key value`, with `value` already quoted or known safe.
    pub fn param(&mut self, key: &str, value: &str) {
        self.indent();
        self.out.push_str(key);
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }

    /// `# text`; callers pass text through `escape::comment_text` when it holds user data.
    pub fn comment(&mut self, text: &str) {
        self.indent();
        self.out.push_str("# ");
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// A line written as is (e.g. `@include`).
    pub fn line(&mut self, text: &str) {
        self.indent();
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Text rendered by another writer, re-indented to the current depth.
    pub fn block(&mut self, text: &str) {
        for line in text.lines() {
            if line.is_empty() {
                self.out.push('\n');
            } else {
                self.line(line);
            }
        }
    }

    pub fn blank(&mut self) {
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}
