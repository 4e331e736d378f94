//! Path normalisation: the gateway authorizes, and forwards, one canonical
//! form of the path, so the upstream can never see a path other than the one
//! the policy judged (`/public/../admin`, `/%61dmin`, `//admin`).

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path must start with `/`")]
    NotAbsolute,
    /// A control character, backslash or fragment marker.
    #[error("path contains a forbidden character")]
    ForbiddenCharacter,
    /// A `%` not followed by two hex digits.
    #[error("path has a malformed percent-encoding")]
    BadPercentEncoding,
    /// An encoded `/`, `\`, NUL or control character, which upstreams decode differently.
    #[error("path contains an encoded separator or control character")]
    EncodedSeparator,
    /// `..` would climb above the root.
    #[error("path escapes the root")]
    EscapesRoot,
    /// Path parameters (`;`, raw or `%3B`): servlet containers (Tomcat,
    /// Jetty, Spring) cut `;…` off every segment before routing, so
    /// `/admin;x/secret` or `/public/..;/admin` would reach a path other
    /// than the one judged.
    #[error("path has parameters (`;`)")]
    PathParameters,
    /// An encoded `%` followed by two hex digits (`%2561` = `%61` once
    /// decoded, `a` twice): an upstream that decodes again sees another path.
    #[error("path is double percent-encoded")]
    DoubleEncoding,
    /// Its escapes decode to bytes that are not UTF-8 (overlong forms such
    /// as `%C0%AE`, stray continuation bytes), which decoders disagree on.
    #[error("path escapes are not UTF-8")]
    InvalidUtf8,
}

/// What to do with `%2F` and `%5C` (encoded `/` and `\`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodedSlashes {
    /// Refuse the request (400): upstreams disagree on whether to decode them.
    #[default]
    Reject,
    /// Keep them encoded (upper-cased); they never act as separators, so
    /// `/a%2F..%2Fadmin` is one segment, not a way to `/admin`.
    Keep,
}

impl EncodedSlashes {
    /// The configuration spellings (`ward.toml`, test files).
    pub const NAMES: &'static [(&'static str, Self)] = &[("reject", Self::Reject), ("keep", Self::Keep)];
}

/// How letter case is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathCase {
    /// Paths are case-sensitive, as HTTP says. Policies still cannot be
    /// bypassed by case: DENY rules also match case variants (see `Bias`).
    #[default]
    Sensitive,
    /// ASCII letters are lower-cased before routing, matching and
    /// forwarding (for upstreams that treat paths case-insensitively).
    Lowercase,
}

impl PathCase {
    /// The configuration spellings (`ward.toml`, test files).
    pub const NAMES: &'static [(&'static str, Self)] =
        &[("sensitive", Self::Sensitive), ("lowercase", Self::Lowercase)];
}

/// Normalisation options (`[policy]` in `ward.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathOptions {
    /// `%2F` / `%5C` handling.
    pub encoded_slashes: EncodedSlashes,
    /// Case handling.
    pub case: PathCase,
    /// Path parameters (`;`): refused unless kept.
    pub params: Allow,
    /// `%25` followed by two hex digits: refused unless kept.
    pub double_encoding: Allow,
}

/// Whether something refused by default is kept instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allow {
    /// Refused (400): the default.
    #[default]
    Reject,
    /// Kept as sent; the policy judges it as it is (for upstreams that
    /// treat it literally).
    Keep,
}

impl Allow {
    /// The configuration spellings.
    pub const NAMES: &'static [(&'static str, Self)] = &[("reject", Self::Reject), ("keep", Self::Keep)];
}

/// [`normalize_path_with`] with the default options.
///
/// # Errors
/// [`PathError`] naming the first problem.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    normalize_path_with(raw, &PathOptions::default())
}

/// Normalise a request path (without its query):
/// - percent-encoded unreserved characters are decoded (`%61` → `a`) and other
///   escapes are upper-cased (`%2f` is refused, see below);
/// - encoded `/` and `\` are refused or kept encoded (`options`); encoded
///   NUL and control characters are refused;
/// - empty segments are merged (`//` → `/`), `.` segments dropped and `..`
///   segments resolved, refusing any that climb above the root;
/// - a trailing `/` is kept;
/// - with [`PathCase::Lowercase`], ASCII letters outside escapes are lower-cased.
///
/// # Errors
/// [`PathError`] naming the first problem.
pub fn normalize_path_with(raw: &str, options: &PathOptions) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(raw, options.encoded_slashes)?;
    if options.double_encoding == Allow::Reject && is_double_encoded(&decoded) {
        return Err(PathError::DoubleEncoding);
    }
    if !escapes_are_utf8(&decoded) {
        return Err(PathError::InvalidUtf8);
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = decoded.ends_with('/');
    for segment in decoded.split('/') {
        match segment {
            "" => {}
            "." => trailing_slash = true,
            ".." => {
                segments.pop().ok_or(PathError::EscapesRoot)?;
                trailing_slash = true;
            }
            s if options.params == Allow::Reject && (s.contains(';') || s.contains("%3B")) => {
                return Err(PathError::PathParameters);
            }
            s => {
                segments.push(s);
                trailing_slash = decoded.ends_with('/');
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    if options.case == PathCase::Lowercase {
        out = lowercase_outside_escapes(&out);
    }
    Ok(out)
}

/// `%25` followed by two hex digits.
fn is_double_encoded(path: &str) -> bool {
    path.match_indices("%25").any(|(i, _)| {
        let rest = path.as_bytes().get(i + 3..i + 5);
        rest.is_some_and(|r| r.iter().all(u8::is_ascii_hexdigit))
    })
}

/// Whether the path, with every escape decoded, is UTF-8 (raw characters
/// are, being a `&str`; escapes may not be).
fn escapes_are_utf8(path: &str) -> bool {
    if !path.contains('%') {
        return true; // no escapes: a `&str` is UTF-8 (and nothing is allocated)
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(0));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&out).is_ok()
}

fn lowercase_outside_escapes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut escape = 0;
    for c in path.chars() {
        if c == '%' {
            escape = 2;
            out.push(c);
        } else if escape > 0 {
            escape -= 1;
            out.push(c);
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn decode_unreserved(raw: &str, slashes: EncodedSlashes) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| char::from(*c).to_digit(16));
                let lo = bytes.get(i + 2).and_then(|c| char::from(*c).to_digit(16));
                let (Some(hi), Some(lo)) = (hi, lo) else { return Err(PathError::BadPercentEncoding) };
                let v = u8::try_from(hi * 16 + lo).map_err(|_| PathError::BadPercentEncoding)?;
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(v));
                } else if v < 0x20 || v == 0x7f || ((v == b'/' || v == b'\\') && slashes == EncodedSlashes::Reject) {
                    return Err(PathError::EncodedSeparator);
                } else {
                    out.push('%');
                    out.push_str(&format!("{v:02X}"));
                }
                i += 3;
            }
            b'\\' | b'#' => return Err(PathError::ForbiddenCharacter),
            c if c < 0x20 || c == 0x7f => return Err(PathError::ForbiddenCharacter),
            _ => {
                // Multi-byte UTF-8 is copied byte-exact through the char boundary.
                let rest = raw.get(i..).unwrap_or_default();
                let c = rest.chars().next().ok_or(PathError::ForbiddenCharacter)?;
                out.push(c);
                i += c.len_utf8();
                continue;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let cases = [
            ("/", "/"),
            ("/api/x", "/api/x"),
            ("/api//x", "/api/x"),
            ("/api/./x", "/api/x"),
            ("/public/../admin", "/admin"),
            ("/api/x/", "/api/x/"),
            ("/api/x/..", "/api/"),
            ("/%61dmin", "/admin"),
            ("/a%2e%2e/b", "/a../b"),
            ("/x/%2E%2E/admin", "/admin"),
            ("/q%3fx", "/q%3Fx"),
            ("/caf\u{e9}", "/caf\u{e9}"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses_ambiguous_paths() {
        assert_eq!(normalize_path("api"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("/../etc/passwd"), Err(PathError::EscapesRoot));
        for servlet_trick in [
            "/public/..;/api/x",
            "/public/..;jsessionid=1/api",
            "/a/.;x/b",
            "/public/..%3b/api",
            "/public/%2e%2e;/api",
            "/admin;x/secret",
            "/;x/admin",
            "/api/x;v=1",
        ] {
            assert_eq!(normalize_path(servlet_trick), Err(PathError::PathParameters), "{servlet_trick}");
        }
        assert_eq!(normalize_path("/a/%2e%2e/%2e%2e/b"), Err(PathError::EscapesRoot));
        for double in ["/api/%2573ecret", "/a%252Fb", "/%25%32%65"] {
            assert_eq!(normalize_path(double), Err(PathError::DoubleEncoding), "{double}");
        }
        assert_eq!(normalize_path("/100%25").as_deref(), Ok("/100%25"), "an encoded % alone is fine");
        for bad in ["/%c0%ae%c0%ae/x", "/a%80", "/%ff", "/%e2%82"] {
            assert_eq!(normalize_path(bad), Err(PathError::InvalidUtf8), "{bad}");
        }
        assert_eq!(normalize_path("/%C5%BF").as_deref(), Ok("/%C5%BF"), "valid UTF-8 is kept as sent (not folded)");
        let lenient = PathOptions { params: Allow::Keep, double_encoding: Allow::Keep, ..PathOptions::default() };
        assert_eq!(normalize_path_with("/api/x;v=1", &lenient).as_deref(), Ok("/api/x;v=1"));
        assert_eq!(normalize_path_with("/api/%2573", &lenient).as_deref(), Ok("/api/%2573"));
        assert_eq!(normalize_path("/admin%2fx"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a%00b"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a\\b"), Err(PathError::ForbiddenCharacter));
        assert_eq!(normalize_path("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize_path("/a%4"), Err(PathError::BadPercentEncoding));
    }

    #[test]
    fn options_keep_slashes_encoded_and_lower_case() {
        let keep = PathOptions { encoded_slashes: EncodedSlashes::Keep, ..PathOptions::default() };
        assert_eq!(normalize_path_with("/a%2f..%2Fadmin", &keep).as_deref(), Ok("/a%2F..%2Fadmin"));
        assert_eq!(normalize_path_with("/a%5cb", &keep).as_deref(), Ok("/a%5Cb"));
        assert_eq!(normalize_path_with("/a%00b", &keep), Err(PathError::EncodedSeparator));
        let lower = PathOptions { case: PathCase::Lowercase, ..PathOptions::default() };
        assert_eq!(normalize_path_with("/ADMIN/%3fX/Y", &lower).as_deref(), Ok("/admin/%3Fx/y"));
    }

    #[test]
    fn normalisation_is_idempotent() {
        for p in ["/a/b/../c//d/./", "/%7euser/x", "/x/%41%42", "/a/.."] {
            let once = normalize_path(p).unwrap();
            assert_eq!(normalize_path(&once).unwrap(), once, "{p}");
        }
    }
}
