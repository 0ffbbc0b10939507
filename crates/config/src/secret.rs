//! A string that must never be shown: Debug, Display and Serialize all print a mask.
//!
//! The one exception is [`crate::Config::to_toml_with_secrets`], which writes a
//! configuration file a program made for itself (the test installation, `mlc demo`): it
//! serializes with the values exposed, on this thread only, for the length of one call.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::Cell;

thread_local! {
    /// Set only inside [`exposed`]: serialization is synchronous, so no other
    /// serialization on this thread can observe it.
    static EXPOSE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every [`Secret`] serializing its value instead of the mask.
pub(crate) fn exposed<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            EXPOSE.with(|e| e.set(self.0));
        }
    }
    let _reset = Reset(EXPOSE.with(|e| e.replace(true)));
    f()
}

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The only way to the value; grep for it to audit where secrets go.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if EXPOSE.with(Cell::get) {
            s.serialize_str(&self.0)
        } else {
            s.serialize_str("***redacted***")
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}
