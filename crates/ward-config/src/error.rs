//! Configuration errors that point at the file, line and field.

use std::fmt;
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
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
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
                let snippet = text.get(span).unwrap_or_default().trim();
                let field = (!snippet.is_empty() && snippet.len() <= 64 && !snippet.contains('\n'))
                    .then(|| snippet.trim_matches(['[', ']']).to_owned());
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
