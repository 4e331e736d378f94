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
}

/// Normalise a request path (without its query):
/// - percent-encoded unreserved characters are decoded (`%61` → `a`) and other
///   escapes are upper-cased (`%2f` is refused, see below);
/// - encoded `/` and `\`, NUL and control characters are refused;
/// - empty segments are merged (`//` → `/`), `.` segments dropped and `..`
///   segments resolved, refusing any that climb above the root;
/// - a trailing `/` is kept.
///
/// # Errors
/// [`PathError`] naming the first problem.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
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
    Ok(out)
}

fn decode_unreserved(raw: &str) -> Result<String, PathError> {
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
                } else if v == b'/' || v == b'\\' || v < 0x20 || v == 0x7f {
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
        assert_eq!(normalize_path("/a/%2e%2e/%2e%2e/b"), Err(PathError::EscapesRoot));
        assert_eq!(normalize_path("/admin%2fx"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a%00b"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a\\b"), Err(PathError::ForbiddenCharacter));
        assert_eq!(normalize_path("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize_path("/a%4"), Err(PathError::BadPercentEncoding));
    }

    #[test]
    fn normalisation_is_idempotent() {
        for p in ["/a/b/../c//d/./", "/%7euser/x", "/x/%41%42", "/a/.."] {
            let once = normalize_path(p).unwrap();
            assert_eq!(normalize_path(&once).unwrap(), once, "{p}");
        }
    }
}
