//! Masking of personal data before it reaches a log or an audit record.
//!
//! Masking keeps enough to be useful to an operator (the first character of
//! an e-mail's local part and its domain, the last two digits of a phone
//! number) and removes the rest. Use keyed hashing instead where records
//! must be correlated.

/// Mask one e-mail address: `alice@example.com` → `a***@example.com`.
/// Text that is not an e-mail address is returned unchanged.
#[must_use]
pub fn mask_email(value: &str) -> String {
    match value.split_once('@') {
        Some((local, domain)) if is_email_local(local) && is_email_domain(domain) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        _ => value.to_owned(),
    }
}

/// Mask one phone number: `+44 20 7946 0958` → `+*********58`.
/// Text that is not a phone number is returned unchanged.
#[must_use]
pub fn mask_phone(value: &str) -> String {
    if !looks_like_phone(value) {
        return value.to_owned();
    }
    let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
    let keep = digits.len().saturating_sub(2);
    let plus = if value.trim_start().starts_with('+') { "+" } else { "" };
    let tail: String = digits.get(keep..).map(|d| d.iter().collect()).unwrap_or_default();
    format!("{plus}{}{tail}", "*".repeat(keep))
}

/// Mask every e-mail address and phone number inside free text such as a
/// request path (`/users/alice@example.com/orders` → `/users/a***@example.com/orders`).
#[must_use]
pub fn mask_personal_data(text: &str) -> String {
    // Fast path: most paths contain neither an '@' nor a long digit run.
    if !text.contains('@') && !has_digit_run(text, 7) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    for c in text.chars() {
        if is_separator(c) {
            out.push_str(&mask_token(&token));
            token.clear();
            out.push(c);
        } else {
            token.push(c);
        }
    }
    out.push_str(&mask_token(&token));
    out
}

fn mask_token(token: &str) -> String {
    if token.contains('@') {
        mask_email(token)
    } else if looks_like_phone(token) {
        mask_phone(token)
    } else {
        token.to_owned()
    }
}

fn is_separator(c: char) -> bool {
    matches!(c, '/' | '?' | '&' | '=' | ' ' | ',' | ';' | '"' | '\'' | '<' | '>' | '(' | ')')
}

fn is_email_local(local: &str) -> bool {
    !local.is_empty() && local.chars().all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
}

fn is_email_domain(domain: &str) -> bool {
    domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

fn looks_like_phone(value: &str) -> bool {
    let v = value.trim();
    let digits = v.chars().filter(char::is_ascii_digit).count();
    (7..=15).contains(&digits)
        && v.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
        && v.chars().next().is_some_and(|c| c == '+' || c == '(' || c.is_ascii_digit())
}

fn has_digit_run(text: &str, n: usize) -> bool {
    let mut run = 0;
    for b in text.bytes() {
        if b.is_ascii_digit() || (run > 0 && matches!(b, b' ' | b'-' | b'.' | b'(' | b')')) {
            if b.is_ascii_digit() {
                run += 1;
                if run >= n {
                    return true;
                }
            }
        } else {
            run = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_emails() {
        assert_eq!(mask_email("alice@example.com"), "a***@example.com");
        assert_eq!(mask_email("not an email"), "not an email");
        assert_eq!(mask_email("@example.com"), "@example.com");
    }

    #[test]
    fn masks_phones() {
        assert_eq!(mask_phone("+44 20 7946 0958"), "+**********58");
        assert_eq!(mask_phone("555-0100"), "*****00");
        assert_eq!(mask_phone("12"), "12");
        assert_eq!(mask_phone("order-12345678"), "order-12345678");
    }

    #[test]
    fn masks_inside_paths() {
        assert_eq!(mask_personal_data("/users/alice@example.com/orders"), "/users/a***@example.com/orders");
        assert_eq!(mask_personal_data("/call/+15551234567"), "/call/+*********67");
        assert_eq!(mask_personal_data("/api/items/42"), "/api/items/42");
        let masked = mask_personal_data("/x?email=bob.smith@corp.example&phone=5551234567");
        assert!(!masked.contains("bob.smith"), "{masked}");
        assert!(!masked.contains("5551234567"), "{masked}");
    }
}
