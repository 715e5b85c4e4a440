//! Cryptography: the barrier that encrypts everything dbwarden stores, the seal that
//! protects the barrier's root key, token HMACs, and password generation.
//!
//! Nothing here implements a primitive: AES-256-GCM comes from `aes-gcm`, Argon2id from
//! `argon2`, HMAC-SHA256 from `hmac`/`sha2`, randomness from the operating system's CSPRNG.

pub mod barrier;
pub mod password;
pub mod seal;

pub use barrier::{Barrier, BarrierError, KeyStatus};
pub use seal::{Seal, SealError};

use rand::RngExt;

/// Returns `len` random characters from `[A-Za-z0-9]` (Vault's base62), from the OS CSPRNG.
pub fn random_base62(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Returns `N` random bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::fill(&mut out[..]);
    out
}
