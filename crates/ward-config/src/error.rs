//! Configuration errors that point at the file, line and field.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// A configuration error. Display form: `FILE:LINE:COLUMN: FIELD: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted path of the field (`routes[1].upstream`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A validation failure before it is located in the source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub path: Vec<Seg>,
    pub message: String,
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

impl Invalid {
    pub(crate) fn new(path: Vec<Seg>, message: impl Into<String>) -> Self {
        Self { path, message: message.into() }
    }
}

fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => push_key(&mut s, k),
            Seg::Index(i) => push_index(&mut s, *i),
        }
    }
    s
}

/// Append `key` to a dotted path. A key that is not a bare TOML key (a
/// label such as `ward.dev/route`) is quoted, so that its dots are not read
/// as steps of the path.
fn push_key(s: &mut String, key: &str) {
    if !s.is_empty() {
        s.push('.');
    }
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        s.push_str(key);
    } else {
        s.push_str(&format!("{key:?}"));
    }
}

fn push_index(s: &mut String, i: usize) {
    s.push_str(&format!("[{i}]"));
}

/// The dotted path (`routes[1].public`) of the innermost key whose key or
/// value holds the byte range `span`: serde's messages name only the last
/// key (`unknown field `lots``) or none at all (`invalid type: string
/// "lots", expected usize`), and the same key appears under many tables.
///
/// A table's span in the parsed document is its `[header]` (or, for a
/// table made implicitly by a dotted key, that key), not its body, so every
/// entry is looked at rather than only those whose parent holds `span`.
/// The innermost is the one with the shortest span; of two with the same
/// span (`[[routes]]` is both the array's and its first table's span), the
/// deeper.
///
/// An empty span is the whole document's (a missing top-level section): it
/// names no field, though it lies within the first key.
fn field_at(text: &str, span: &Range<usize>) -> Option<String> {
    if span.is_empty() {
        return None;
    }
    let doc = DeTable::parse(text).ok()?;
    let mut best = None;
    table_fields(doc.get_ref(), span, "", 0, &mut best);
    best.map(|found: Found| found.path)
}

/// The best match so far in [`field_at`].
struct Found {
    len: usize,
    depth: usize,
    path: String,
}

fn consider(candidate: &Range<usize>, span: &Range<usize>, depth: usize, path: &str, best: &mut Option<Found>) {
    if candidate.start > span.start || span.end > candidate.end {
        return;
    }
    let len = candidate.end - candidate.start;
    if best.as_ref().is_none_or(|b| len < b.len || (len == b.len && depth > b.depth)) {
        *best = Some(Found { len, depth, path: path.to_owned() });
    }
}

fn table_fields(table: &DeTable<'_>, span: &Range<usize>, prefix: &str, depth: usize, best: &mut Option<Found>) {
    for (key, value) in table.iter() {
        let mut path = prefix.to_owned();
        push_key(&mut path, key.get_ref());
        consider(&key.span(), span, depth + 1, &path, best);
        consider(&value.span(), span, depth + 1, &path, best);
        value_fields(value.get_ref(), span, &path, depth + 1, best);
    }
}

fn value_fields(value: &DeValue<'_>, span: &Range<usize>, prefix: &str, depth: usize, best: &mut Option<Found>) {
    match value {
        DeValue::Table(table) => table_fields(table, span, prefix, depth, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut path = prefix.to_owned();
                push_index(&mut path, i);
                consider(&item.span(), span, depth + 1, &path, best);
                value_fields(item.get_ref(), span, &path, depth + 1, best);
            }
        }
        _ => {}
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}

/// The byte offset of the deepest part of `path` found in the document.
fn locate(text: &str, path: &[Seg]) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut offset = None;
    let mut iter = path.iter().peekable();
    while let Some(seg) = iter.next() {
        let Seg::Key(key) = seg else { return offset };
        let (k, v) = table.iter().find(|(k, _)| k.get_ref() == key)?;
        offset = Some(k.span().start);
        let mut value = v.get_ref();
        if let Some(Seg::Index(i)) = iter.peek() {
            let DeValue::Array(items) = value else { return offset };
            let item = items.get(*i)?;
            offset = Some(item.span().start);
            value = item.get_ref();
            iter.next();
        }
        match value {
            DeValue::Table(t) => table = t,
            _ => return offset,
        }
    }
    offset
}

impl ConfigError {
    pub(crate) fn io(file: &Path, e: &std::io::Error) -> Self {
        Self { file: file.to_owned(), line: None, column: None, field: None, message: format!("cannot read: {e}") }
    }

    pub(crate) fn syntax(file: &Path, text: &str, e: &toml::de::Error) -> Self {
        let (line, column, field) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                // Text that does not parse as TOML has no document to find
                // the path in: the offending text itself is the best name.
                let field = field_at(text, &span).or_else(|| {
                    let snippet = text.get(span).unwrap_or_default().trim();
                    (!snippet.is_empty() && snippet.len() <= 64 && !snippet.contains('\n'))
                        .then(|| snippet.trim_matches(['[', ']']).to_owned())
                });
                (Some(l), Some(c), field)
            }
            None => (None, None, None),
        };
        Self { file: file.to_owned(), line, column, field, message: e.message().trim().to_owned() }
    }

    pub(crate) fn invalid(file: &Path, text: &str, invalid: Invalid) -> Self {
        let (line, column) = match locate(text, &invalid.path) {
            Some(offset) => {
                let (l, c) = line_col(text, offset);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        Self { file: file.to_owned(), line, column, field: Some(render(&invalid.path)), message: invalid.message }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::ConfigError;

    /// A valid configuration; tests break it in one place.
    const BASE: &str = r#"[gateway]
listen = "127.0.0.1:8443"

[gateway.tls]
cert_file = "tls/server.crt"
key_file = "tls/server.key"

[gateway.limits]
max_headers = 100
idle_timeout = "60s"

[audit]
dir = "audit"
hmac_key_file = "keys/audit.key"
checkpoint_key_file = "keys/audit-checkpoint.key"

[[upstreams]]
name = "demo"
url = "builtin:echo"

[[routes]]
name = "api"
prefix = "/api/"
upstream = "demo"
public = true

[[routes]]
name = "web"
prefix = "/web/"
upstream = "demo"
public = true
"#;

    /// `BASE` with its `nth` (0-based) occurrence of `from` replaced by `to`, and
    /// the 1-based line it is on.
    fn edit(from: &str, nth: usize, to: &str) -> (String, usize) {
        let (at, _) = BASE.match_indices(from).nth(nth).unwrap();
        let line = BASE[..at].matches('\n').count() + 1;
        (format!("{}{to}{}", &BASE[..at], &BASE[at + from.len()..]), line)
    }

    fn error(text: &str) -> ConfigError {
        crate::parse(Path::new("/etc/ward/bad.toml"), text).unwrap_err()
    }

    #[test]
    fn the_base_config_is_valid() {
        crate::parse(Path::new("/etc/ward/ward.toml"), BASE).unwrap();
    }

    #[test]
    fn a_wrong_type_names_the_full_field_path_and_its_line() {
        let (text, line) = edit("max_headers = 100", 0, "max_headers = \"lots\"");
        let e = error(&text);
        assert_eq!(e.field.as_deref(), Some("gateway.limits.max_headers"), "{e}");
        assert_eq!((e.line, e.column), (Some(line), Some(15)), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("/etc/ward/bad.toml:{line}:15: gateway.limits.max_headers: invalid type")),
            "{shown}"
        );
    }

    #[test]
    fn an_unknown_field_names_its_full_path() {
        let (text, line) = edit("idle_timeout", 0, "lots = 1\nidle_timeout");
        let e = error(&text);
        assert_eq!(e.field.as_deref(), Some("gateway.limits.lots"), "{e}");
        assert_eq!((e.line, e.column), (Some(line), Some(1)), "{e}");
        assert!(e.message.starts_with("unknown field `lots`"), "{e}");
    }

    #[test]
    fn a_wrong_type_in_an_array_of_tables_names_the_entry() {
        let (text, line) = edit("public = true", 1, "public = \"yes\"");
        let e = error(&text);
        assert_eq!(e.field.as_deref(), Some("routes[1].public"), "{e}");
        assert_eq!((e.line, e.column), (Some(line), Some(10)), "{e}");

        let (text, line) = edit("public = true", 1, "publik = true");
        let e = error(&text);
        assert_eq!(e.field.as_deref(), Some("routes[1].publik"), "{e}");
        assert_eq!(e.line, Some(line), "{e}");
    }

    #[test]
    fn keys_with_dots_are_quoted_and_inline_values_are_reached() {
        let (text, _) = edit("public = true", 0, "public = true\nlabels = { \"ward.dev/tier\" = 1 }");
        assert_eq!(error(&text).field.as_deref(), Some("routes[0].labels.\"ward.dev/tier\""));
    }

    #[test]
    fn a_missing_field_names_its_table() {
        let (text, _) = edit("key_file = \"tls/server.key\"\n", 0, "");
        let e = error(&text);
        assert_eq!(e.field.as_deref(), Some("gateway.tls"), "{e}");
        assert!(e.message.contains("missing field `key_file`"), "{e}");
        let (text, _) = edit("upstream = \"demo\"\n", 1, "");
        let (_, line) = edit("[[routes]]", 1, "");
        let e = error(&text);
        assert_eq!((e.field.as_deref(), e.line), (Some("routes[1]"), Some(line)), "{e}");
    }

    #[test]
    fn a_missing_section_names_no_field() {
        // The document's own span is empty, at offset 0: it must not be
        // taken for the first key there.
        let audit = "[audit]\ndir = \"audit\"\nhmac_key_file = \"keys/audit.key\"\n";
        let (text, _) = edit(audit, 0, "");
        let text = text.replace("checkpoint_key_file = \"keys/audit-checkpoint.key\"\n", "");
        let e = error(&text);
        assert_eq!((e.field, e.line), (None, Some(1)));
        assert_eq!(e.message, "missing field `audit`");
    }

    #[test]
    fn text_that_is_not_toml_keeps_its_line() {
        let (text, line) = edit("max_headers = 100", 0, "max_headers = = 100");
        let e = error(&text);
        assert_eq!(e.line, Some(line), "{e}");
        assert_ne!(e.field.as_deref(), Some("gateway.limits.max_headers"), "{e}");
    }
}
