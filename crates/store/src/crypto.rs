//! Tokens at rest: AES-256-GCM with a random 96-bit nonce stored in front of the
//! ciphertext. The key comes from configuration, never from the database.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;

use crate::StoreError;

/// A 256-bit key. Debug never shows it.
#[derive(Clone)]
pub struct EncryptionKey([u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(***)")
    }
}

impl EncryptionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses the base64 form used in configuration (`MLC_STORE_ENCRYPTION_KEY`).
    pub fn from_base64(s: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| "is not valid base64".to_string())?;
        let arr: [u8; 32] =
            bytes.try_into().map_err(|v: Vec<u8>| format!("must decode to 32 bytes, got {}", v.len()))?;
        Ok(Self(arr))
    }

    /// A fresh random key, base64 encoded, for `mlc` to suggest.
    pub fn generate_base64() -> String {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        base64::engine::general_purpose::STANDARD.encode(k)
    }

    pub(crate) fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new((&self.0).into());
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        out.extend(cipher.encrypt(Nonce::from_slice(&nonce), plaintext).unwrap_or_default());
        out
    }

    pub(crate) fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < 12 + 16 {
            return Err(StoreError::Crypto("ciphertext too short".into()));
        }
        let cipher = Aes256Gcm::new((&self.0).into());
        cipher.decrypt(Nonce::from_slice(&sealed[..12]), &sealed[12..]).map_err(|_| {
            StoreError::Crypto("cannot decrypt: wrong store encryption key or corrupted row".into())
        })
    }
}
