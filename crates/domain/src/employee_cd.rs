//! The Visma employee number (`employeeCd`) derived from a Gusto employee.
//!
//! Visma lets the caller choose `employeeCd` on create. Deriving it deterministically from the
//! Gusto employee is what makes a create idempotent: a retried or replayed create for the same
//! employee asks for the same number, so it finds the employee instead of adding a second one.
//!
//! The number is the mapping's `prefix` followed by a body chosen by the strategy:
//!
//! * [`EmployeeCdStrategy::EmployeeCode`]: Gusto's short `employee_code` (e.g. `fesa3w`),
//!   upper-cased. Readable, and operators can find the employee in Gusto by it.
//! * [`EmployeeCdStrategy::UuidHash`]: Crockford base32 of SHA-256 of the lower-cased employee
//!   uuid, cut to fill the rest of `max_length`. Needs nothing but the uuid, which every
//!   snapshot has.
//!
//! Length: Visma's `employeeCd` is the key of the EMPLOYEE segmented key, whose length is a
//! per-company setting (`GET /v1/dimension/EMPLOYEE` -> `length`); the public specs give no
//! fixed number. [`EmployeeCdRule::DEFAULT_MAX_LENGTH`] assumes the common 10 characters, and
//! the mapping may lower or raise it (up to 30, the width of the underlying account-code
//! column in the ERP).
//!
//! Changing the rule of a company that already has linked employees would derive other
//! numbers; the writer keeps the number it stored in `employee_links` for linked employees, so
//! the rule only decides the number of employees not created yet.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How the body of the employee number is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmployeeCdStrategy {
    /// Gusto's `employee_code`, upper-cased.
    EmployeeCode,
    /// Crockford base32 of SHA-256 of the employee uuid.
    UuidHash,
}

impl EmployeeCdStrategy {
    /// The spelling used in the mapping file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmployeeCode => "employee_code",
            Self::UuidHash => "uuid_hash",
        }
    }
}

/// A validated rule: prefix, strategy and the maximum length of the whole number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmployeeCdRule {
    prefix: String,
    strategy: EmployeeCdStrategy,
    max_length: usize,
}

/// Why an [`EmployeeCdRule`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmployeeCdRuleError {
    /// The prefix has characters Visma keys and URL paths do not take well.
    #[error("employee_cd prefix {prefix:?} must contain only the characters A-Z and 0-9")]
    InvalidPrefix {
        /// The prefix as written.
        prefix: String,
    },
    /// `max_length` is outside what a Visma key can hold.
    #[error("employee_cd max_length {max_length} must be between 1 and {}", EmployeeCdRule::MAX_MAX_LENGTH)]
    MaxLengthOutOfRange {
        /// The length as written.
        max_length: i64,
    },
    /// Prefix and body do not fit `max_length`.
    #[error(
        "employee_cd rule is too long: prefix {prefix:?} ({prefix_len} chars) + {strategy} body \
         ({body_len} chars) exceeds max_length {max_length}"
    )]
    TooLong {
        /// The prefix as written.
        prefix: String,
        /// Characters in the prefix.
        prefix_len: usize,
        /// The strategy, as spelled in the mapping file.
        strategy: &'static str,
        /// The body length the strategy needs at least.
        body_len: usize,
        /// The configured maximum.
        max_length: usize,
    },
}

/// Why no employee number can be derived for one employee. Messages carry no personal data:
/// they end up in park reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmployeeCdError {
    /// Strategy `employee_code`, but Gusto sent none.
    #[error("employee has no Gusto employee_code; employee_cd strategy \"employee_code\" needs it")]
    MissingEmployeeCode,
    /// Strategy `employee_code`, but the code has characters a Visma key should not carry.
    #[error("Gusto employee_code contains characters other than A-Z and 0-9")]
    InvalidEmployeeCode,
    /// Strategy `uuid_hash`, but the snapshot has no employee uuid.
    #[error("employee has no uuid; employee_cd strategy \"uuid_hash\" needs it")]
    MissingUuid,
    /// The derived number is longer than the rule allows.
    #[error(
        "derived employee_cd has {length} characters, more than max_length {max_length}; \
         shorten the prefix or switch employee_cd strategy to \"uuid_hash\""
    )]
    TooLong {
        /// Length of prefix + body.
        length: usize,
        /// The configured maximum.
        max_length: usize,
    },
}

impl EmployeeCdRule {
    /// Length assumed when the mapping does not say: the common EMPLOYEE key length.
    pub const DEFAULT_MAX_LENGTH: usize = 10;
    /// The widest Visma account code (`AcctCD`, 30 characters).
    pub const MAX_MAX_LENGTH: usize = 30;
    /// Length of Gusto's `employee_code` as seen in its docs (`fesa3w`). The rule must leave
    /// room for it; a longer code is still accepted at mapping time if it fits.
    pub const ASSUMED_EMPLOYEE_CODE_LENGTH: usize = 6;
    /// Shortest hash body allowed: 8 base32 characters are 40 bits, a collision chance under
    /// 1 in 20 000 for a company of 10 000 employees.
    pub const MIN_HASH_LENGTH: usize = 8;

    /// Validates and builds a rule. `max_length` is signed so that a negative number written
    /// in a mapping file is reported rather than wrapped.
    pub fn new(
        prefix: impl Into<String>,
        strategy: EmployeeCdStrategy,
        max_length: i64,
    ) -> Result<Self, EmployeeCdRuleError> {
        let prefix = prefix.into();
        if !prefix.bytes().all(is_key_byte) {
            return Err(EmployeeCdRuleError::InvalidPrefix { prefix });
        }
        let max_length = usize::try_from(max_length)
            .ok()
            .filter(|len| (1..=Self::MAX_MAX_LENGTH).contains(len))
            .ok_or(EmployeeCdRuleError::MaxLengthOutOfRange { max_length })?;
        let body_len = match strategy {
            EmployeeCdStrategy::EmployeeCode => Self::ASSUMED_EMPLOYEE_CODE_LENGTH,
            EmployeeCdStrategy::UuidHash => Self::MIN_HASH_LENGTH,
        };
        // The prefix is ASCII (checked above), so bytes are characters.
        if prefix.len() + body_len > max_length {
            return Err(EmployeeCdRuleError::TooLong {
                prefix_len: prefix.len(),
                prefix,
                strategy: strategy.as_str(),
                body_len,
                max_length,
            });
        }
        Ok(Self { prefix, strategy, max_length })
    }

    /// A rule that is never applied: stands in while a mapping with problems is validated.
    pub(crate) fn placeholder() -> Self {
        Self {
            prefix: String::new(),
            strategy: EmployeeCdStrategy::UuidHash,
            max_length: Self::DEFAULT_MAX_LENGTH,
        }
    }

    /// The fixed start of every number.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How the body is derived.
    pub fn strategy(&self) -> EmployeeCdStrategy {
        self.strategy
    }

    /// The longest number this rule may produce.
    pub fn max_length(&self) -> usize {
        self.max_length
    }
}

/// Derives the Visma employee number of a Gusto employee.
///
/// Pure and stable: the same uuid, code and rule always give the same number, and the result
/// never exceeds `rule.max_length()`. Surrounding whitespace and the case of the inputs do not
/// matter (uuids are compared lower-cased, codes upper-cased).
pub fn employee_cd(
    employee_uuid: &str,
    employee_code: &str,
    rule: &EmployeeCdRule,
) -> Result<String, EmployeeCdError> {
    let body = match rule.strategy {
        EmployeeCdStrategy::EmployeeCode => {
            let code = employee_code.trim();
            if code.is_empty() {
                return Err(EmployeeCdError::MissingEmployeeCode);
            }
            let code = code.to_ascii_uppercase();
            if !code.bytes().all(is_key_byte) {
                return Err(EmployeeCdError::InvalidEmployeeCode);
            }
            code
        }
        EmployeeCdStrategy::UuidHash => {
            let uuid = employee_uuid.trim();
            if uuid.is_empty() {
                return Err(EmployeeCdError::MissingUuid);
            }
            let digest = Sha256::digest(uuid.to_ascii_lowercase().as_bytes());
            let mut body = crockford_base32(&digest);
            // Fill whatever the prefix leaves; `new` guaranteed at least MIN_HASH_LENGTH.
            body.truncate(rule.max_length - rule.prefix.len());
            body
        }
    };
    let length = rule.prefix.len() + body.len();
    if length > rule.max_length {
        return Err(EmployeeCdError::TooLong { length, max_length: rule.max_length });
    }
    Ok(format!("{}{body}", rule.prefix))
}

/// Characters allowed in a derived key: upper-case ASCII letters and digits. They survive URL
/// paths (`/v1/employee/{employeeCd}`) and Visma's upper-casing key masks unchanged.
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// Crockford's base32 (no padding): digits and upper-case letters without I, L, O and U, so a
/// number read aloud or typed by an operator is not misread.
fn crockford_base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 0x1f) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 0x1f) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, strategy: EmployeeCdStrategy, max: i64) -> EmployeeCdRule {
        EmployeeCdRule::new(prefix, strategy, max).expect("valid rule")
    }

    #[test]
    fn employee_code_is_prefixed_and_upper_cased() {
        let r = rule("G", EmployeeCdStrategy::EmployeeCode, 10);
        assert_eq!(employee_cd("uuid", " fesa3w ", &r).as_deref(), Ok("GFESA3W"));
    }

    #[test]
    fn employee_code_missing_or_odd_is_an_error() {
        let r = rule("G", EmployeeCdStrategy::EmployeeCode, 10);
        assert_eq!(employee_cd("uuid", "  ", &r), Err(EmployeeCdError::MissingEmployeeCode));
        assert_eq!(employee_cd("uuid", "ab-c", &r), Err(EmployeeCdError::InvalidEmployeeCode));
        assert_eq!(
            employee_cd("uuid", "abcdefghijk", &r),
            Err(EmployeeCdError::TooLong { length: 12, max_length: 10 })
        );
    }

    #[test]
    fn uuid_hash_fills_max_length_and_ignores_case() {
        let r = rule("G", EmployeeCdStrategy::UuidHash, 10);
        let uuid = "9A0B7F52-0B0E-4C67-9D55-2A1C7E0E3A11";
        let cd = employee_cd(uuid, "", &r).expect("derivable");
        assert_eq!(cd.len(), 10);
        assert!(cd.starts_with('G'));
        assert_eq!(Ok(cd), employee_cd(&uuid.to_lowercase(), "other", &r));
    }

    #[test]
    fn uuid_hash_needs_a_uuid() {
        let r = rule("", EmployeeCdStrategy::UuidHash, 10);
        assert_eq!(employee_cd(" ", "x", &r), Err(EmployeeCdError::MissingUuid));
    }

    #[test]
    fn rule_rejects_bad_prefix_length_and_overflow() {
        assert!(matches!(
            EmployeeCdRule::new("g-", EmployeeCdStrategy::UuidHash, 10),
            Err(EmployeeCdRuleError::InvalidPrefix { .. })
        ));
        assert!(matches!(
            EmployeeCdRule::new("G", EmployeeCdStrategy::UuidHash, 0),
            Err(EmployeeCdRuleError::MaxLengthOutOfRange { max_length: 0 })
        ));
        assert!(matches!(
            EmployeeCdRule::new("G", EmployeeCdStrategy::UuidHash, -3),
            Err(EmployeeCdRuleError::MaxLengthOutOfRange { max_length: -3 })
        ));
        assert!(matches!(
            EmployeeCdRule::new("GUSTO", EmployeeCdStrategy::EmployeeCode, 10),
            Err(EmployeeCdRuleError::TooLong { body_len: 6, .. })
        ));
        assert!(EmployeeCdRule::new("GUST", EmployeeCdStrategy::EmployeeCode, 10).is_ok());
    }

    #[test]
    fn crockford_matches_known_vectors() {
        assert_eq!(crockford_base32(b""), "");
        assert_eq!(crockford_base32(&[0xff]), "ZW");
        assert_eq!(crockford_base32(b"foobar"), "CSQPYRK1E8");
    }
}
