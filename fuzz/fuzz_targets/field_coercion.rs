//! Request field coercion (`dbwarden::http::fields`), duration parsing and Vault's TTL
//! arithmetic (`dbwarden::engine::ttl`).
//!
//! Input: `json-or-text 0xFF ttl-bytes`. The first field is parsed as JSON (any value; text
//! that is not JSON becomes a JSON string) and offered as field `k`, alone and inside an
//! object; the rest gives TTL inputs as little-endian integers.
//!
//! Properties: accessors never panic; durations are never negative; a duration string
//! formatted by `format_duration` parses back to the same seconds; `calculate` returns a
//! positive TTL that never passes `start + max_ttl`, or an error when that moment is past.
#![no_main]

use dbwarden::engine::ttl::{DEFAULT_MOUNT_TTL, TtlInputs, calculate, format_duration};
use dbwarden::http::fields::{Fields, parse_duration};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0xFF);
    let first = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();

    let text = String::from_utf8_lossy(first);
    let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text.to_string()));
    let mut fields = Map::new();
    if let Value::Object(obj) = &value {
        fields.extend(obj.clone());
    }
    fields.insert("k".to_owned(), value);
    let fields = Fields(fields);
    let keys: Vec<String> = fields.0.keys().cloned().collect();
    for key in keys.iter().map(String::as_str).chain(["missing"]) {
        let _ = fields.raw(key);
        let _ = fields.has(key);
        let _ = fields.string(key);
        let _ = fields.bool(key);
        let _ = fields.int(key);
        if let Ok(Some(secs)) = fields.duration(key) {
            assert!(secs >= 0, "negative duration");
        }
        if let Ok(Some(list)) = fields.string_list(key) {
            assert!(list.iter().all(|s| !s.is_empty()));
        }
        if let Ok(Some(list)) = fields.comma_list(key) {
            assert!(list.iter().all(|s| !s.is_empty() && s.trim() == s));
        }
        let _ = fields.kv_pairs(key);
    }

    if let Some(secs) = parse_duration(&text)
        && (0..=1 << 40).contains(&secs)
    {
        assert_eq!(parse_duration(&format_duration(secs)), Some(secs));
    }

    // TTL arithmetic over what `Fields::duration` can produce (non-negative seconds) and
    // Unix times.
    let mut ints = rest
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            i64::from_le_bytes(b)
        })
        .chain(std::iter::repeat(0));
    let mut duration = || ints.next().unwrap().checked_abs().unwrap_or(i64::MAX);
    let inputs = TtlInputs {
        increment: duration(),
        backend_ttl: duration(),
        backend_max_ttl: duration(),
        mount_default_ttl: duration(),
        mount_max_ttl: duration(),
    };
    let start = duration() % (1 << 40);
    let now = start + duration() % (1 << 40);
    let mount_max = if inputs.mount_max_ttl > 0 {
        inputs.mount_max_ttl
    } else {
        DEFAULT_MOUNT_TTL
    };
    let max_ttl = if inputs.backend_max_ttl > 0 {
        inputs.backend_max_ttl.min(mount_max)
    } else {
        mount_max
    };
    let deadline = i128::from(start) + i128::from(max_ttl);
    match calculate(inputs, start, now) {
        Ok((ttl, _warning)) => {
            assert!(ttl > 0, "non-positive TTL {ttl}");
            assert!(
                i128::from(now) + i128::from(ttl) <= deadline,
                "TTL passes the max TTL"
            );
        }
        Err(_) => assert!(i128::from(now) >= deadline, "refused before the max TTL"),
    }
});
