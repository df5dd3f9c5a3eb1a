//! Gateway keys as strings: `sk-sy-` and 320 random bits in base64url. Only the SHA-256 of a key
//! is stored; the first characters are kept in clear so people can tell keys apart.

use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// What every gateway key starts with.
pub const KEY_PREFIX: &str = "sk-sy-";
/// Random bytes per key: 320 bits, of which the visible prefix shows 48, leaving 272 secret.
const RANDOM_BYTES: usize = 40;
/// Characters of the random part shown in listings.
const VISIBLE_CHARS: usize = 8;
/// The longest `Authorization` value looked at: anything longer is not a key of ours, and is
/// refused before it is hashed.
pub const MAX_TOKEN_LEN: usize = 256;

/// A freshly made key.
pub struct NewToken {
    /// The whole key, shown once.
    pub secret: SecretString,
    /// Its visible start (`sk-sy-AbCdEfGh`).
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub hash_hex: String,
}

/// Makes a key from the operating system's random source.
pub fn generate() -> Result<NewToken, getrandom::Error> {
    let mut random = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut random)?;
    let mut key = String::with_capacity(KEY_PREFIX.len() + 54);
    key.push_str(KEY_PREFIX);
    URL_SAFE_NO_PAD.encode_string(random, &mut key);
    let prefix = key[..KEY_PREFIX.len() + VISIBLE_CHARS].to_owned();
    let hash_hex = hex(&hash(&key));
    Ok(NewToken {
        secret: SecretString::from(key),
        prefix,
        hash_hex,
    })
}

/// SHA-256 of a key: the cache and the store know keys only by it.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lower-case hex, as stored.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The 32 bytes of a SHA-256 written by `hex`; `None` for any other text.
pub fn unhex(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(bytes)
}

/// The bearer token of a request, if it carries one of plausible length.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_TOKEN_LEN)
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_key_has_the_prefix_enough_randomness_and_is_stored_only_as_its_hash() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        let key = a.secret.expose_secret();
        assert!(key.starts_with("sk-sy-"));
        // 40 random bytes in unpadded base64url.
        assert_eq!(key.len(), 6 + 54);
        assert!(key.starts_with(&a.prefix) && a.prefix.len() == 14);
        assert_eq!(a.hash_hex, hex(&hash(key)));
        assert!(!a.hash_hex.contains(&key[6..]));
        assert_ne!(key, b.secret.expose_secret());
    }

    #[test]
    fn only_a_bearer_token_of_bounded_length_is_read() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, "Bearer sk-sy-abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("sk-sy-abc"));
        h.insert(AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
        assert_eq!(bearer(&h), None);
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        h.insert(AUTHORIZATION, long.parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
