//! Upstream credentials at rest: AES-256-GCM under the master key, a fresh random 96-bit nonce
//! per sealing, and the project and backend as associated data, so a sealed value copied onto
//! another project or backend does not open.
//!
//! Format: `v1.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>`. The version lets the format change;
//! the key id (derived from the key, not secret) says which master key sealed it, so
//! `switchyard admin rotate-master-key` can tell what it has already re-sealed.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

const VERSION: &str = "v1";
const NONCE_BYTES: usize = 12;

/// The 32-byte key credentials are sealed with, and its public id.
pub struct MasterKey {
    key: SecretBox<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// Why a credential could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Not `v1.<id>.<base64>`.
    #[error("not a sealed credential of a known format")]
    Format,
    /// Sealed under another master key than the one given.
    #[error("sealed under master key {0}, not the configured one")]
    OtherKey(String),
    /// Wrong key, wrong project or backend, or altered bytes.
    #[error("the credential does not decrypt (altered, or moved to another project or backend)")]
    Decrypt,
    /// The random source failed.
    #[error("no randomness available for a nonce")]
    Random,
}

impl MasterKey {
    /// A master key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        // A one-way, domain-separated digest: it names the key without revealing it.
        let digest = Sha256::new()
            .chain_update(b"switchyard master key id\0")
            .chain_update(bytes)
            .finalize();
        MasterKey {
            id: super::token::hex(&digest[..4]),
            key: SecretBox::new(Box::new(bytes)),
        }
    }

    /// Its public id, as written into sealed values.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.expose_secret().into())
    }

    /// Seals `plaintext` for `project`'s `backend`.
    pub fn seal(&self, project: &str, backend: &str, plaintext: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let aad = associated_data(project, backend);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: &aad,
        };
        let ciphertext = self
            .cipher()
            .encrypt(&Nonce::from(nonce), payload)
            .map_err(|_| SealError::Decrypt)?;
        let mut blob = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{VERSION}.{}.{}", self.id, STANDARD.encode(blob)))
    }

    /// Opens a value sealed for `project`'s `backend`.
    pub fn open(
        &self,
        project: &str,
        backend: &str,
        sealed: &str,
    ) -> Result<SecretString, SealError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Format);
        };
        if id != self.id {
            return Err(SealError::OtherKey(id.to_owned()));
        }
        let blob = STANDARD.decode(body).map_err(|_| SealError::Format)?;
        let (nonce, ciphertext) = blob
            .split_at_checked(NONCE_BYTES)
            .ok_or(SealError::Format)?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError::Format)?;
        let aad = associated_data(project, backend);
        let plaintext = self
            .cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Decrypt)?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| SealError::Format)
    }
}

/// The master key id a sealed value names, if it is in the known format.
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    let mut parts = sealed.splitn(3, '.');
    (parts.next() == Some(VERSION)).then(|| parts.next())?
}

/// `project \0 backend`: NUL cannot occur in either (ids are UUIDs, backend names are TOML keys
/// checked by the admin functions), so no two pairs give the same bytes.
fn associated_data(project: &str, backend: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(project.len() + backend.len() + 1);
    aad.extend_from_slice(project.as_bytes());
    aad.push(0);
    aad.extend_from_slice(backend.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_credential_opens_only_for_its_project_backend_and_key() {
        let key = MasterKey::new([7; 32]);
        let sealed = key.seal("p1", "openai", "sk-upstream-secret").unwrap();
        assert!(sealed.starts_with(&format!("v1.{}.", key.id())));
        assert!(!sealed.contains("sk-upstream-secret"));
        assert_eq!(
            key.open("p1", "openai", &sealed).unwrap().expose_secret(),
            "sk-upstream-secret"
        );
        assert_eq!(
            key.open("p2", "openai", &sealed).unwrap_err(),
            SealError::Decrypt
        );
        assert_eq!(
            key.open("p1", "other", &sealed).unwrap_err(),
            SealError::Decrypt
        );
        let other = MasterKey::new([8; 32]);
        assert!(matches!(
            other.open("p1", "openai", &sealed),
            Err(SealError::OtherKey(_))
        ));
        assert_eq!(sealed_key_id(&sealed), Some(key.id()));
    }

    #[test]
    fn each_sealing_uses_a_fresh_nonce_and_tampering_is_detected() {
        let key = MasterKey::new([7; 32]);
        let a = key.seal("p", "b", "same").unwrap();
        let b = key.seal("p", "b", "same").unwrap();
        assert_ne!(a, b);
        let mut blob = STANDARD.decode(a.rsplit('.').next().unwrap()).unwrap();
        blob[NONCE_BYTES] ^= 1;
        let altered = format!("v1.{}.{}", key.id(), STANDARD.encode(blob));
        assert_eq!(
            key.open("p", "b", &altered).unwrap_err(),
            SealError::Decrypt
        );
        assert_eq!(key.open("p", "b", "v2.x.y").unwrap_err(), SealError::Format);
    }
}
