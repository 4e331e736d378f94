//! Reading `Cookie` request headers (RFC 6265 §5.4: `name=value` pairs
//! separated by `; `, possibly over several header lines), without an HTTP
//! crate: callers pass the header values as text.

/// The value of the first cookie called `name`.
pub fn find<'a>(header_values: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    pairs(header_values).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// The cookies `keep` accepts (by name), as one `Cookie` header value;
/// `None` when none is left.
pub fn retain<'a>(header_values: impl IntoIterator<Item = &'a str>, keep: impl Fn(&str) -> bool) -> Option<String> {
    let kept: Vec<&str> = header_values
        .into_iter()
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && keep(c.split_once('=').map_or(*c, |(k, _)| k)))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

fn pairs<'a>(header_values: impl IntoIterator<Item = &'a str>) -> impl Iterator<Item = (&'a str, &'a str)> {
    header_values.into_iter().flat_map(|v| v.split(';')).filter_map(|c| c.trim().split_once('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_and_filtered_across_header_lines() {
        let lines = ["a=1; session=xyz", "b=2;c=3"];
        assert_eq!(find(lines, "session"), Some("xyz"));
        assert_eq!(find(lines, "c"), Some("3"));
        assert_eq!(find(lines, "sess"), None);
        assert_eq!(retain(lines, |n| n != "session").as_deref(), Some("a=1; b=2; c=3"));
        assert_eq!(retain(["session=x"], |n| n != "session"), None);
    }
}
