//! The external plugin protocol's decoders (`dbwarden_plugin::external`): what the server
//! reads from a plugin (handshake, response lines, typed results, with error messages
//! redacted of the secrets it sent) and what a plugin reads from the server (request lines
//! and their typed `params`).
//!
//! Input: fields separated by 0xFF: `line 0xFF secret 0xFF secret ...`.
//!
//! Properties: an accepted handshake speaks this protocol and version and lists a plugin
//! name; an error message from a plugin keeps no byte of any occurrence of a secret; errors
//! keep their kind across a wire round trip; decoded params re-encode to a stable form.
#![no_main]

use dbwarden_plugin::BackendError;
use dbwarden_plugin::error::redact;
use dbwarden_plugin::external::{
    DeleteUserParams, GenerateUsernameParams, GenerateUsernameResult, InitializeParams,
    InitializeResult, NewUserParams, PROTOCOL, PROTOCOL_VERSION, Request, UpdateUserParams,
    WireError, decode_handshake, decode_params, decode_response, decode_result,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut parts = data
        .split(|&b| b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let line = parts.next().unwrap_or_default();
    let secrets: Vec<String> = parts.collect();
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();

    // Server side: the handshake.
    if let Ok(hs) = decode_handshake("fuzz", &line) {
        assert_eq!(hs.protocol, PROTOCOL);
        assert_eq!(hs.version, PROTOCOL_VERSION);
        assert!(!hs.plugin_names.is_empty());
    }

    // Server side: a response.
    if let Ok((_id, reply)) = decode_response(&line, |m| redact(m, &secret_refs)) {
        match reply {
            Ok(value) => {
                let _ = decode_result::<InitializeResult>("fuzz", "initialize", value.clone());
                let _ = decode_result::<GenerateUsernameResult>("fuzz", "generate_username", value);
            }
            Err(err) => {
                let raw = raw_message(&line);
                assert_eq!(err.message(), masked(&raw, &secret_refs), "secret survived");
                let wire = WireError::from(&err);
                let back = BackendError::from(wire.clone());
                assert_eq!(back.kind(), err.kind());
                assert_eq!(back.to_string(), err.to_string());
                let line = serde_json::to_string(&wire).unwrap();
                assert_eq!(serde_json::from_str::<WireError>(&line).unwrap(), wire);
            }
        }
    }

    // Plugin side: a request and its params.
    if let Ok(request) = serde_json::from_str::<Request>(&line) {
        let method = request.method.as_str();
        let params = request.params;
        match method {
            "initialize" => round_trip::<InitializeParams>(method, params),
            "generate_username" => round_trip::<GenerateUsernameParams>(method, params),
            "new_user" => round_trip::<NewUserParams>(method, params),
            "update_user" => round_trip::<UpdateUserParams>(method, params),
            "delete_user" => round_trip::<DeleteUserParams>(method, params),
            _ => {
                round_trip::<NewUserParams>(method, params.clone());
                round_trip::<UpdateUserParams>(method, params);
            }
        }
    }
});

/// Decodes params; when they decode, encoding and decoding again gives the same encoding.
fn round_trip<T: Serialize + DeserializeOwned>(method: &str, params: Value) {
    let Ok(decoded) = decode_params::<T>(method, params) else {
        return;
    };
    let once = serde_json::to_value(&decoded).unwrap();
    let again: T = decode_params(method, once.clone()).expect("re-encoded params decode");
    assert_eq!(serde_json::to_value(&again).unwrap(), once);
}

/// The error message as the plugin sent it.
fn raw_message(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// Reference redaction: every byte inside any occurrence of a non-empty secret (occurrences
/// may overlap) is hidden; each maximal hidden run becomes one `[redacted]`.
fn masked(message: &str, secrets: &[&str]) -> String {
    let mut hidden = vec![false; message.len()];
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut from = 0;
        while let Some(at) = message[from..].find(secret) {
            let start = from + at;
            hidden[start..start + secret.len()].fill(true);
            from = start + message[start..].chars().next().unwrap().len_utf8();
        }
    }
    let mut out = String::new();
    for (i, c) in message.char_indices() {
        if !hidden[i] {
            out.push(c);
        } else if i == 0 || !hidden[i - 1] {
            out.push_str("[redacted]");
        }
    }
    out
}
