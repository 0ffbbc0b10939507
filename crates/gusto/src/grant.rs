//! OAuth grants as this crate sees them: an id, a status, the persisted row and the
//! storage contract every process shares. A leaf: the client, the token manager and the
//! errors all name these types, and these name nothing of theirs.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::secret::Secret;

/// Identifies one OAuth grant (one company authorisation). Opaque to this crate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantId(pub String);

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for GrantId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for GrantId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Whether a grant can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantStatus {
    Active,
    /// The refresh token is dead; a person must authorise again.
    NeedsReauth {
        reason: String,
    },
}

/// One grant as persisted. `version` increases by one on every successful CAS;
/// version 0 means "no row" when inserting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGrant {
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub expires_at: DateTime<Utc>,
    pub version: i64,
    pub status: GrantStatus,
    /// Set while a process refreshes; others wait until it lapses or the version moves.
    pub refresh_lease_until: Option<DateTime<Utc>>,
}

/// A store failure (database down, ...). Never carries token values.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Persistence of grants, shared by all processes using the same grant.
///
/// Implementations must make `compare_and_swap` atomic (a conditional
/// `UPDATE ... WHERE version = $expected` is enough) and must store `new` verbatim,
/// including its `version` (which is always `expected_version + 1`).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The current row, if any.
    async fn load(&self, grant: &GrantId) -> Result<Option<StoredGrant>, StoreError>;
    /// Replaces the row iff its version is `expected_version` (0 = absent: insert).
    /// Returns whether the swap happened.
    async fn compare_and_swap(
        &self,
        grant: &GrantId,
        expected_version: i64,
        new: StoredGrant,
    ) -> Result<bool, StoreError>;
    /// Marks the grant dead, whatever its version, and bumps the version.
    async fn mark_needs_reauth(&self, grant: &GrantId, reason: &str) -> Result<(), StoreError>;
}
