//! Gusto API client for a read-mostly sync: typed models, OAuth token manager with
//! cross-process single-flight refresh, a rolling-window rate limiter per grant and
//! webhook signature verification.
//!
//! The pieces are independent so services can use only what they need: the gateway
//! needs [`webhook`] only; the projector needs [`GustoClient`].

pub mod client;
pub mod error;
pub mod grant;
pub mod limiter;
pub mod models;
pub mod observe;
pub mod secret;
pub mod token;
pub mod version;
pub mod webhook;

pub use client::{
    ClientConfig, ClientObserver, GustoClient, Page, RetryPolicy, SharedLimit, DEMO_BASE_URL,
    PRODUCTION_BASE_URL,
};
pub use error::{ApiErrorDetail, GustoError, MalformedKind};
pub use limiter::{RateLimitConfig, RateLimiter};
pub use models::*;
pub use secret::Secret;
pub use token::{
    GrantId, GrantStatus, MemoryTokenStore, OAuthClient, StoreError, StoredGrant, TokenManager,
    TokenManagerConfig, TokenResponse, TokenStore,
};
pub use version::{ApiVersionStatus, DEFAULT_API_VERSION};
