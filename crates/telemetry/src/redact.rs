//! The last line of defence: masks values that look like credentials in any text that
//! leaves the process as a log line. Secrets are kept out of messages by type
//! (`Secret`, redacting `Debug`); this catches what a careless format string lets by.

/// Keys whose values are secret wherever they appear (JSON, `k=v`, headers).
const SECRET_KEYS: &[&str] = &[
    "access_token",
    "refresh_token",
    "client_secret",
    "verification_token",
    "authorization",
    "password",
    "encryption_key",
    "x-gusto-signature",
    "code",
    "pass",
    "token",
    "auth_token",
    "nkey_seed",
    "seed",
    "jwt",
];

/// Keys that are ordinary words too ("the token expired", "code: 3"): secret only as a
/// parameter, `key=...` or `"key":...`.
const PARAMETER_KEYS: &[&str] = &["code", "pass", "token", "auth_token", "nkey_seed", "seed", "jwt"];

/// Returns `text` with the value after every secret key, and every bearer token, masked.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    let lower = out.to_ascii_lowercase();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(i) = lower[from..].find(key) {
            let start = from + i;
            let after = start + key.len();
            from = after;
            // Only whole keys: `code` must not match inside `employee_code`.
            let prev = lower[..start].chars().next_back();
            if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                continue;
            }
            // `code` is a secret only as an OAuth parameter (`code=...` or `"code":`), not in
            // prose such as "the Gusto code: ..."; the same for the other word-like keys.
            if PARAMETER_KEYS.contains(key) {
                let quoted = prev == Some('"');
                let next = lower[after..].chars().next();
                if !(next == Some('=') || quoted && lower[after..].starts_with("\":")) {
                    continue;
                }
            }
            if let Some(span) = value_span(&lower, after) {
                spans.push(span);
            }
        }
    }
    let mut from = 0;
    while let Some(i) = lower[from..].find("bearer ") {
        let start = from + i + "bearer ".len();
        let end = token_end(&lower, start);
        if end > start {
            spans.push((start, end));
        }
        from = start;
    }
    spans.extend(url_userinfo(&lower));
    spans.extend(nkey_seeds(&out));
    spans.sort();
    spans.dedup();
    for (s, e) in spans.into_iter().rev() {
        if e > s && out.is_char_boundary(s) && out.is_char_boundary(e) && &out[s..e] != "***" {
            out.replace_range(s..e, "***");
        }
    }
    out
}

/// After a key: skip a closing quote, separators (`:`, `=`, spaces, an opening quote) and
/// return the value's byte range.
fn value_span(s: &str, mut i: usize) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    if i < b.len() && (b[i] == b'"' || b[i] == b'\\') {
        while i < b.len() && (b[i] == b'"' || b[i] == b'\\') {
            i += 1;
        }
    }
    // A separator needs `:` or `=`: "authorization violation" is prose, not a value.
    let sep_start = i;
    while i < b.len() && matches!(b[i], b':' | b'=' | b' ') {
        i += 1;
    }
    if !s[sep_start..i].contains([':', '=']) {
        return None;
    }
    while i < b.len() && (b[i] == b'"' || b[i] == b'\\') {
        i += 1;
    }
    // Rust's Debug of an `Option<String>`: `password: Some("...")`.
    if s[i..].starts_with("some(") {
        i += "some(".len();
        while i < b.len() && (b[i] == b'"' || b[i] == b'\\') {
            i += 1;
        }
    }
    if s[i..].starts_with("bearer ") {
        i += "bearer ".len();
    }
    let end = token_end(s, i);
    (end > i).then_some((i, end))
}

/// The `user:password` of every `scheme://user:password@host`.
fn url_userinfo(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(i) = s[from..].find("://") {
        let start = from + i + 3;
        let mut j = start;
        while j < b.len() && !matches!(b[j], b'@' | b'/' | b'"' | b'\\' | b' ' | b',' | b'\n' | b'?' | b'#') {
            j += 1;
        }
        if j < b.len() && b[j] == b'@' && j > start {
            spans.push((start, j));
        }
        from = start;
    }
    spans
}

/// NKey seeds (`SU...`, `SA...`, `SO...`: 58 base32 characters), wherever they stand.
fn nkey_seeds(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let base32 = |c: u8| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c);
    let mut spans = Vec::new();
    let mut i = 0;
    while i + 58 <= b.len() {
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if boundary
            && b[i] == b'S'
            && matches!(b[i + 1], b'U' | b'A' | b'O')
            && b[i..i + 58].iter().all(|c| base32(*c))
            && b.get(i + 58).is_none_or(|c| !c.is_ascii_alphanumeric())
        {
            spans.push((i, i + 58));
            i += 58;
        } else {
            i += 1;
        }
    }
    spans
}

fn token_end(s: &str, start: usize) -> usize {
    let b = s.as_bytes();
    let mut i = start;
    while i < b.len() && !matches!(b[i], b'"' | b'\\' | b',' | b' ' | b'}' | b'&' | b'\n' | b';') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn masks_json_form_and_header_secrets() {
        let line = r#"{"msg":"token","access_token":"abc123","refresh_token": "def","x":1}"#;
        let r = redact(line);
        assert!(!r.contains("abc123") && !r.contains("def\""), "{r}");
        assert!(r.contains(r#""x":1"#));
        assert_eq!(
            redact("grant_type=refresh_token&refresh_token=zzz&client_secret=yyy"),
            "grant_type=refresh_token&refresh_token=***&client_secret=***"
        );
        assert_eq!(redact("Authorization: Bearer eyJhbGciOi.x.y"), "Authorization: Bearer ***");
        assert_eq!(redact("sent bearer QWERTY now"), "sent bearer *** now");
    }

    #[test]
    fn masks_escaped_json_inside_a_json_log_line() {
        let r = redact(r#"{"message":"body {\"verification_token\":\"6590f590\"}"}"#);
        assert!(!r.contains("6590f590"), "{r}");
    }

    #[test]
    fn code_is_a_secret_only_as_an_oauth_parameter() {
        assert_eq!(redact("GET /cb?code=abc123&state=x"), "GET /cb?code=***&state=x");
        assert_eq!(redact(r#"{"code":"abc123"}"#), r#"{"code":"***"}"#);
        let prose = "exchanging the Gusto code: transport error";
        assert_eq!(redact(prose), prose);
    }

    #[test]
    fn masks_url_credentials_debug_options_and_nkey_seeds() {
        assert_eq!(redact("nats://mlcgw:pw-SECRET@127.0.0.1:4222"), "nats://***@127.0.0.1:4222");
        let debug =
            r#"ServerAddr(Url { username: "mlcgw", password: Some("pw-SECRET"), host: Some(Domain("h")) })"#;
        assert!(!redact(debug).contains("SECRET"), "{}", redact(debug));
        let seed = format!("SU{}", "A".repeat(56));
        let r = redact(&format!("read seed {seed} from file"));
        assert!(!r.contains(&seed), "{r}");
        assert_eq!(redact(r#"{"pass":"pw-SECRET","token":"t-SECRET"}"#), r#"{"pass":"***","token":"***"}"#);
        let prose = "the token expired; pass the next one; http://host/x@y; nats: authorization violation";
        assert_eq!(redact(prose), prose);
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let s = r#"{"employee_code":"fesa3w","event_type":"employee.updated"}"#;
        assert_eq!(redact(s), s);
    }
}
