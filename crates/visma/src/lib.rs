//! Visma.net ERP API client: Visma Connect tokens, employee DTOs, error classification.
//!
//! * [`VismaClient`]: one per tenant (company). Client-credentials token from Visma Connect,
//!   cached and refreshed ~3 minutes before `expires_in` runs out (there is no refresh token).
//!   Optional legacy mode (`/API/controller/api/v1` + `ipp-company-id`).
//! * [`dto`]: read DTOs with plain scalars, write DTOs with `{"value": x}` wrappers where an
//!   omitted field means "unchanged".
//! * [`VismaError`]: retryable vs permanent, with Visma's own message from any of its three
//!   error body shapes. [`with_retry`] is a bounded helper honouring `Retry-After`.
//! * [`VismaClient::rate_limit`]: the last `X-RateLimit-*` values, for pacing.

mod client;
mod config;
pub mod dto;
mod error;
mod retry;
mod secret;

pub use client::{Created, DateCondition, EmployeeQuery, Page, RateLimitStatus, VismaClient};
pub use config::{LegacyMode, VismaConfig, DEFAULT_BASE_URL, DEFAULT_SCOPES, DEFAULT_TOKEN_URL};
pub use dto::{
    BranchDto, DepartmentDto, DimensionDto, EmployeeCreateDto, EmployeeDto, EmployeeStatus,
    EmployeeUpdateDto, EmployeeWriteStatus, SegmentUpdateDto,
};
pub use error::{extract_message, VismaError};
pub use retry::{with_retry, RetryPolicy};
pub use secret::Secret;
