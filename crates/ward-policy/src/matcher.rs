//! The match forms of Istio's `StringMatch` as `AuthorizationPolicy` writes
//! them: exact `abc`, prefix `abc*`, suffix `*abc`, presence `*`; Envoy URI
//! templates for paths (`{*}`, `{**}`); CIDR blocks for addresses.

use std::fmt;

/// Why a value could not be compiled into a matcher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MatchError(pub String);

/// One value of a string field, in Istio's four forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StringMatch {
    /// The whole value equals this.
    Exact(String),
    /// The value starts with this (`abc*`).
    Prefix(String),
    /// The value ends with this (`*abc`).
    Suffix(String),
    /// Any non-empty value (`*`).
    Presence,
}

impl StringMatch {
    /// Parse Istio's notation. A `*` anywhere but first or last is an error,
    /// as is the empty string (it would match nothing and reads like a typo).
    ///
    /// # Errors
    /// [`MatchError`] naming the problem.
    pub fn parse(s: &str) -> Result<Self, MatchError> {
        if s.is_empty() {
            return Err(MatchError("an empty value matches nothing; remove it or write `*`".into()));
        }
        if s == "*" {
            return Ok(Self::Presence);
        }
        let m = if let Some(rest) = s.strip_prefix('*') {
            Self::Suffix(rest.to_owned())
        } else if let Some(rest) = s.strip_suffix('*') {
            Self::Prefix(rest.to_owned())
        } else {
            Self::Exact(s.to_owned())
        };
        match &m {
            Self::Exact(v) | Self::Prefix(v) | Self::Suffix(v) if v.contains('*') => {
                Err(MatchError(format!("`{s}`: `*` may only stand first, last, or alone")))
            }
            _ => Ok(m),
        }
    }

    /// Whether `value` matches.
    #[must_use]
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(v) => value == v,
            Self::Prefix(v) => value.starts_with(v.as_str()),
            Self::Suffix(v) => value.ends_with(v.as_str()),
            Self::Presence => !value.is_empty(),
        }
    }

    /// The same matcher with its text ASCII-lowercased (for case-insensitive fields).
    #[must_use]
    pub fn to_ascii_lowercase(&self) -> Self {
        match self {
            Self::Exact(v) => Self::Exact(v.to_ascii_lowercase()),
            Self::Prefix(v) => Self::Prefix(v.to_ascii_lowercase()),
            Self::Suffix(v) => Self::Suffix(v.to_ascii_lowercase()),
            Self::Presence => Self::Presence,
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(v) => f.write_str(v),
            Self::Prefix(v) => write!(f, "{v}*"),
            Self::Suffix(v) => write!(f, "*{v}"),
            Self::Presence => f.write_str("*"),
        }
    }
}

/// A path value: one of the string forms, or an Envoy URI template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// `exact`, `prefix*`, `*suffix` or `*`.
    String(StringMatch),
    /// A template with `{*}` and at most one trailing `{**}`.
    Template(Template),
}

/// An Envoy URI template as Istio uses it for `paths`: `{*}` matches exactly
/// one non-empty path segment, `{**}` matches the rest of the path (zero or
/// more characters, `/` included) and must be the last operator; literal
/// text may follow it (`/files/{**}.pdf`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    /// Segments before `{**}` (or all of them when there is none).
    head: Vec<TemplateSegment>,
    /// `Some(suffix)` when the template has `{**}`: the literal text after it.
    rest: Option<String>,
    /// The literal text before the first operator, for indexing.
    literal_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TemplateSegment {
    Literal(String),
    One,
}

/// Characters a template operator can match: Envoy's `pchar` set without `/`.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@=".contains(c) || !c.is_ascii()
}

impl Template {
    fn parse(s: &str) -> Result<Self, MatchError> {
        let err = |why: &str| MatchError(format!("path template `{s}`: {why}"));
        if !s.starts_with('/') {
            return Err(err("must start with `/`"));
        }
        let (before, rest) = match s.find("{**}") {
            Some(i) => {
                let after = s.get(i + 4..).unwrap_or_default();
                if after.contains('{') || after.contains('}') || after.contains('*') {
                    return Err(err("`{**}` must be the last operator"));
                }
                let head = s.get(..i).unwrap_or_default();
                if !head.ends_with('/') {
                    return Err(err("`{**}` must be a whole segment"));
                }
                (head.get(..head.len() - 1).unwrap_or_default(), Some(after.to_owned()))
            }
            None => (s, None),
        };
        let mut head = Vec::new();
        for part in before.split('/').skip(1) {
            head.push(match part {
                "{*}" => TemplateSegment::One,
                p if p.contains(['{', '}', '*']) => return Err(err("`{*}` and `{**}` must be whole segments")),
                p => TemplateSegment::Literal(p.to_owned()),
            });
        }
        if before.is_empty() && rest.is_some() {
            head.clear();
        }
        let literal_prefix = s.split('{').next().unwrap_or_default().to_owned();
        Ok(Self { head, rest, literal_prefix })
    }

    fn matches(&self, path: &str) -> bool {
        let mut remaining = path;
        for segment in &self.head {
            let Some(after_slash) = remaining.strip_prefix('/') else { return false };
            let end = after_slash.find('/').unwrap_or(after_slash.len());
            let (part, tail) = after_slash.split_at(end);
            let ok = match segment {
                TemplateSegment::Literal(l) => part == l,
                TemplateSegment::One => !part.is_empty() && part.chars().all(is_path_char),
            };
            if !ok {
                return false;
            }
            remaining = tail;
        }
        match &self.rest {
            None => remaining.is_empty(),
            Some(suffix) => {
                let Some(after_slash) = remaining.strip_prefix('/') else { return false };
                let Some(middle) = after_slash.strip_suffix(suffix.as_str()) else { return false };
                middle.chars().all(|c| c == '/' || is_path_char(c))
            }
        }
    }

    fn to_ascii_lowercase(&self) -> Self {
        Self {
            head: self
                .head
                .iter()
                .map(|s| match s {
                    TemplateSegment::Literal(l) => TemplateSegment::Literal(l.to_ascii_lowercase()),
                    TemplateSegment::One => TemplateSegment::One,
                })
                .collect(),
            rest: self.rest.as_ref().map(|r| r.to_ascii_lowercase()),
            literal_prefix: self.literal_prefix.to_ascii_lowercase(),
        }
    }
}

impl PathMatch {
    /// Parse a `paths` value. Values with `{` are templates; the string forms
    /// other than `*` and `*suffix` must start with `/`.
    ///
    /// # Errors
    /// [`MatchError`] naming the problem.
    pub fn parse(s: &str) -> Result<Self, MatchError> {
        if s.contains('{') || s.contains('}') {
            return Template::parse(s).map(Self::Template);
        }
        let m = StringMatch::parse(s)?;
        match &m {
            StringMatch::Exact(v) | StringMatch::Prefix(v) if !v.starts_with('/') => {
                Err(MatchError(format!("path `{s}` must start with `/`")))
            }
            _ => Ok(Self::String(m)),
        }
    }

    /// Whether the (normalised) path matches.
    #[must_use]
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::String(m) => m.matches(path),
            Self::Template(t) => t.matches(path),
        }
    }

    /// The same matcher ASCII-lowercased.
    #[must_use]
    pub fn to_ascii_lowercase(&self) -> Self {
        match self {
            Self::String(m) => Self::String(m.to_ascii_lowercase()),
            Self::Template(t) => Self::Template(t.to_ascii_lowercase()),
        }
    }

    /// What an index can key this matcher on.
    pub(crate) fn index_key(&self) -> IndexKey<'_> {
        match self {
            Self::String(StringMatch::Exact(v)) => IndexKey::Exact(v),
            Self::String(StringMatch::Prefix(v)) => IndexKey::Prefix(v),
            Self::Template(t) => IndexKey::Prefix(&t.literal_prefix),
            Self::String(StringMatch::Suffix(_) | StringMatch::Presence) => IndexKey::Any,
        }
    }
}

/// How a path matcher can be found from a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexKey<'a> {
    /// Only this exact path can match.
    Exact(&'a str),
    /// Only paths starting with this can match.
    Prefix(&'a str),
    /// Any path might match.
    Any,
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(m) => m.fmt(f),
            Self::Template(t) => {
                for s in &t.head {
                    match s {
                        TemplateSegment::Literal(l) => write!(f, "/{l}")?,
                        TemplateSegment::One => f.write_str("/{*}")?,
                    }
                }
                if let Some(rest) = &t.rest {
                    write!(f, "/{{**}}{rest}")?;
                }
                Ok(())
            }
        }
    }
}

pub use ward_core::net::{Cidr, canonical_ip};

/// [`Cidr::parse`] with the policy documents' error type.
pub(crate) fn parse_cidr(s: &str) -> Result<Cidr, MatchError> {
    Cidr::parse(s).map_err(|e| MatchError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms() {
        let m = |s: &str| StringMatch::parse(s).unwrap();
        assert!(m("abc").matches("abc") && !m("abc").matches("abcd"));
        assert!(m("abc*").matches("abcd") && m("abc*").matches("abc") && !m("abc*").matches("xabc"));
        assert!(m("*abc").matches("xabc") && !m("*abc").matches("abcx"));
        assert!(m("*").matches("x") && !m("*").matches(""));
        for bad in ["", "a*b", "**a*", "*a*"] {
            assert!(StringMatch::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(m("A*").to_ascii_lowercase(), m("a*"));
        for s in ["abc", "abc*", "*abc", "*"] {
            assert_eq!(m(s).to_string(), s);
        }
    }

    #[test]
    fn path_forms_and_templates() {
        let p = |s: &str| PathMatch::parse(s).unwrap();
        assert!(p("/api/*").matches("/api/x/y") && !p("/api/*").matches("/apix"));
        assert!(p("*.json").matches("/a.json"));
        assert!(p("/api/{*}/items").matches("/api/7/items"));
        assert!(!p("/api/{*}/items").matches("/api/7/8/items"));
        assert!(!p("/api/{*}/items").matches("/api//items"));
        assert!(p("/api/{**}").matches("/api/a/b/c"));
        assert!(p("/api/{**}").matches("/api/"));
        assert!(!p("/api/{**}").matches("/api"));
        assert!(p("/files/{**}.pdf").matches("/files/a/b.pdf"));
        assert!(!p("/files/{**}.pdf").matches("/files/a/b.txt"));
        assert!(p("/{*}/x/{**}").matches("/a/x/b/c"));
        assert!(p("/{**}").matches("/anything/at/all"));
        assert!(!p("/a/{*}").matches("/a/b?c"), "`?` is not a path character");
        for bad in ["api/*", "/a/{**}/{*}", "/a/x{*}", "/a/{**}x/{*}", "/a{**}", "/{x}", "a{*}"] {
            assert!(PathMatch::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(p("/api/{*}/items").to_string(), "/api/{*}/items");
        assert_eq!(p("/f/{**}.pdf").to_string(), "/f/{**}.pdf");
        assert_eq!(p("/API/{*}").to_ascii_lowercase(), p("/api/{*}"));
    }

    #[test]
    fn index_keys() {
        let p = |s: &str| PathMatch::parse(s).unwrap();
        assert_eq!(p("/a").index_key(), IndexKey::Exact("/a"));
        assert_eq!(p("/a/*").index_key(), IndexKey::Prefix("/a/"));
        assert_eq!(p("/a/{*}/b").index_key(), IndexKey::Prefix("/a/"));
        assert_eq!(p("*.x").index_key(), IndexKey::Any);
    }
}
