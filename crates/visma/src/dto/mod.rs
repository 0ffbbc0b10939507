//! Wire DTOs of the Visma.net ERP API (names exactly as in the spec).
//!
//! Read DTOs carry plain scalars; write DTOs wrap every scalar as `{"value": x}` and leave out
//! (`skip_serializing_if`) every field that should stay unchanged. Mind the asymmetries: write
//! `middleName` / read `midName`, write `calendar` / read `calendarID`, write `countryId` / read
//! `country.id`, write status `Hold` / read `OnHold`.

use serde::{Deserialize, Serialize};

mod read;
mod write;
pub use read::*;
pub use write::*;

/// The `{"value": x}` wrapper of write DTOs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value<T> {
    pub value: T,
}

impl<T> Value<T> {
    pub fn new(value: T) -> Self {
        Self { value }
    }
}

impl From<&str> for Value<String> {
    fn from(v: &str) -> Self {
        Self::new(v.to_string())
    }
}

impl From<String> for Value<String> {
    fn from(v: String) -> Self {
        Self::new(v)
    }
}

/// Shorthand for an optional wrapped string: `Some(v("x"))`.
pub fn v(s: impl Into<String>) -> Value<String> {
    Value::new(s.into())
}
