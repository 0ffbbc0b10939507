//! Webhook signature verification and payload parsing.
//!
//! Gusto signs each delivery with `X-Gusto-Signature: hex(HMAC-SHA256(key, body))`
//! where the key is the subscription's verification token (its UTF-8 bytes) and the
//! message is the raw body. Verify over the exact bytes received, before any parsing:
//! re-serialising JSON changes the bytes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::models::WebhookEvent;

type HmacSha256 = Hmac<Sha256>;

/// The HTTP header carrying the signature (matched case-insensitively by HTTP stacks).
pub const SIGNATURE_HEADER: &str = "X-Gusto-Signature";

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Gusto-Signature header")]
    Missing,
    #[error("X-Gusto-Signature is not 64 lowercase hex characters")]
    BadEncoding,
    #[error("no verification token configured")]
    NoKeys,
    #[error("signature does not match any verification token")]
    Mismatch,
}

/// Checks `header` against the HMAC of `body` under each token in `tokens`.
///
/// Several tokens are accepted so a subscription can be rotated (old and new token
/// valid for a while). The comparison is constant-time (`Mac::verify_slice`).
/// Only lowercase hex is accepted: that is what Gusto sends, and accepting several
/// encodings widens what an attacker may try for nothing.
pub fn verify_signature(
    tokens: &[impl AsRef<[u8]>],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or(SignatureError::Missing)?;
    if header.len() != 64 || !header.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(SignatureError::BadEncoding);
    }
    let expected = hex::decode(header).map_err(|_| SignatureError::BadEncoding)?;
    if tokens.is_empty() {
        return Err(SignatureError::NoKeys);
    }
    for token in tokens {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let Ok(mut mac) = HmacSha256::new_from_slice(token.as_ref()) else {
            continue;
        };
        mac.update(body);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// Computes the lowercase-hex signature Gusto would send (for tests and simulators).
pub fn sign(token: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(token).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Parses a delivery body into the thin event envelope. Unknown fields are ignored.
pub fn parse_event(body: &[u8]) -> Result<WebhookEvent, serde_json::Error> {
    serde_json::from_slice(body)
}

/// If `body` is the unsigned verification handshake, exactly
/// `{"verification_token": "<string>"}` and nothing else, returns the token.
///
/// Anything with extra keys is not a handshake and must go through signature
/// verification: otherwise an attacker could smuggle an event past the check.
pub fn is_verification_handshake(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    match obj.get("verification_token")? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "6590f590-3dba-495e-9bea-c361e1e2efc0";
    const BODY: &str = r#"{"uuid":"03ffbf0c-48a9-4f1c-932a-546413a26ad1","event_type":"employee.created","resource_type":"Company","resource_uuid":"5df911a0-e8e9-412d-8aaf-a46ad193dd96","entity_type":"Employee","entity_uuid":"bcfc9744-0ab3-4ef3-ab0d-e728255d659c","timestamp":1671058841}"#;
    const SIG: &str = "c6e35d71a6cbfad6c26002a4e208e9982cc38010c118c7d3f20537356e117845";

    #[test]
    fn worked_vector_from_the_notes() {
        assert_eq!(sign(KEY.as_bytes(), BODY.as_bytes()), SIG);
        assert_eq!(verify_signature(&[KEY], BODY.as_bytes(), Some(SIG)), Ok(()));
        // Rotation: the right key anywhere in the list is enough.
        assert_eq!(verify_signature(&["old-token", KEY], BODY.as_bytes(), Some(SIG)), Ok(()));
        let event = parse_event(BODY.as_bytes()).expect("parse");
        assert_eq!(event.event_type, "employee.created");
        assert_eq!(event.timestamp, Some(1_671_058_841));
        assert_eq!(event.resource_uuid.as_deref(), Some("5df911a0-e8e9-412d-8aaf-a46ad193dd96"));
    }

    #[test]
    fn rejects_tampering_and_bad_headers() {
        let tampered = BODY.replace("1671058841", "1671058842");
        assert_eq!(verify_signature(&[KEY], tampered.as_bytes(), Some(SIG)), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(&["other"], BODY.as_bytes(), Some(SIG)), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(&[KEY], BODY.as_bytes(), None), Err(SignatureError::Missing));
        assert_eq!(
            verify_signature(&[KEY], BODY.as_bytes(), Some(&SIG.to_uppercase())),
            Err(SignatureError::BadEncoding)
        );
        assert_eq!(
            verify_signature(&[KEY], BODY.as_bytes(), Some("sha256=abc")),
            Err(SignatureError::BadEncoding)
        );
        let none: [&str; 0] = [];
        assert_eq!(verify_signature(&none, BODY.as_bytes(), Some(SIG)), Err(SignatureError::NoKeys));
    }

    #[test]
    fn handshake_shape_is_exact() {
        assert_eq!(is_verification_handshake(br#"{"verification_token": "abc"}"#).as_deref(), Some("abc"));
        assert_eq!(is_verification_handshake(br#"{"verification_token":"abc","uuid":"x"}"#), None);
        assert_eq!(is_verification_handshake(br#"{"verification_token":1}"#), None);
        assert_eq!(is_verification_handshake(BODY.as_bytes()), None);
        assert_eq!(is_verification_handshake(b"not json"), None);
    }
}
