//! Password policies (`dbwarden::crypto::password::PasswordPolicy`): HCL (or base64 of
//! HCL) parsing, HCL1 one-line rewriting, validation and generation.
//!
//! Input: the policy text.
//!
//! Properties: a policy that parses and generates yields a password of exactly `length`
//! characters, all from the union of the charsets, with at least `min-chars` from each rule.
#![no_main]

use dbwarden::crypto::password::PasswordPolicy;
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret as _;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = PasswordPolicy::parse(source) else {
        return;
    };
    let Ok(password) = policy.generate() else {
        return;
    };
    let chars: Vec<char> = password.expose_secret().chars().collect();
    assert_eq!(chars.len(), policy.length, "wrong length");
    for c in &chars {
        assert!(
            policy.rules.iter().any(|r| r.charset.contains(c)),
            "character outside every charset"
        );
    }
    for rule in &policy.rules {
        let count = chars.iter().filter(|c| rule.charset.contains(c)).count();
        assert!(count >= rule.min_chars, "min-chars not met");
    }
});
