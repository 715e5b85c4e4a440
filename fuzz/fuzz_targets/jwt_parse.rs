//! Kubernetes ServiceAccount JWT handling (`dbwarden::auth::kubernetes::verify_offline`):
//! header decoding, algorithm policy, signature and claim checks, JWKS parsing and the
//! ServiceAccount claims.
//!
//! Input: one flags byte, then the payload. Flags: bits 0-1 select the mode, bit 2 disables
//! `iss` validation, bit 3 sets a TokenReview JWT (so `exp` is optional), bit 4 configures a
//! custom issuer.
//! - mode 0: the payload is a token, verified against the test key given as `pem_keys`;
//! - mode 1: the payload is a claims object, signed here with the test key, then verified,
//!   so the claim checks and ServiceAccount extraction see arbitrary claims;
//! - mode 2: the payload is a JWKS document; a valid token is verified against it;
//! - mode 3: the payload is a token, verified against the test key as a JWKS.
//!
//! Properties: a token is accepted only if its claims name the ServiceAccount in `sub`, carry
//! an acceptable `iss` and an unexpired `exp` as configured; a JWKS document verifies the
//! test token only if it holds the test key.
#![no_main]

use base64::Engine as _;
use dbwarden::auth::kubernetes::{Config, verify_offline};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A P-256 key made for these tests only.
const PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRHAUpJfPtpxTBOBr
lTHcJ6UcUX4/B7YGj66zNqcHFFuhRANCAATQ4fkvwiJDo95DHqPqt6vtb+5OZl49
GlaH379gQc4+Amy0HWciCM6VOgOBqyqxBcwdgvnTHu/m+FpoiW3qHYDZ
-----END PRIVATE KEY-----
";
const PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE0OH5L8IiQ6PeQx6j6rer7W/uTmZe
PRpWh9+/YEHOPgJstB1nIgjOlToDgasqsQXMHYL50x7v5vhaaIlt6h2A2Q==
-----END PUBLIC KEY-----
";
const X: &str = "0OH5L8IiQ6PeQx6j6rer7W_uTmZePRpWh9-_YEHOPgI";
const Y: &str = "bLQdZyIIzpU6A4GrKrEFzB2C-dMe7-b4WmiJbeodgNk";
/// Legacy-claims token for `ns1/app` from `kubernetes/serviceaccount`, expiring in 2100.
const TOKEN: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InRlc3Qta2V5In0.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Iiwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50Om5zMTphcHAiLCJleHAiOjQxMDI0NDQ4MDAsImt1YmVybmV0ZXMuaW8vc2VydmljZWFjY291bnQvbmFtZXNwYWNlIjoibnMxIiwia3ViZXJuZXRlcy5pby9zZXJ2aWNlYWNjb3VudC9zZXJ2aWNlLWFjY291bnQubmFtZSI6ImFwcCJ9.0ZfdmZokl8oFn9ACua8fRnEnuZk1DL7b-SZaVbugvxir8LHvQoGfpcczTGP8fG57YjSHEMk0Dq7mTZtNdhBLLg";
const CUSTOM_ISSUER: &str = "https://issuer.example";
const DEFAULT_ISSUERS: &[&str] = &[
    "kubernetes/serviceaccount",
    "https://kubernetes.default.svc.cluster.local",
    "https://kubernetes.default.svc",
];

fn jwks() -> String {
    format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"test-key","x":"{X}","y":"{Y}"}}]}}"#)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, payload)) = data.split_first() else {
        return;
    };
    let mut config = Config {
        disable_iss_validation: flags & 4 != 0,
        ..Config::default()
    };
    if flags & 8 != 0 {
        config.token_reviewer_jwt = "reviewer".to_owned();
    }
    if flags & 16 != 0 {
        config.issuer = CUSTOM_ISSUER.to_owned();
    }
    let text = String::from_utf8_lossy(payload);
    match flags & 3 {
        0 => {
            config.pem_keys = vec![PUBLIC_PEM.to_owned()];
            let _ = verify_offline(&config, b"", &text);
        }
        1 => {
            let Ok(claims @ Value::Object(_)) = serde_json::from_slice::<Value>(payload) else {
                return;
            };
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("test-key".to_owned());
            let key = EncodingKey::from_ec_pem(PRIVATE_PEM.as_bytes()).unwrap();
            let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
            config.pem_keys = vec![PUBLIC_PEM.to_owned()];
            if let Ok((namespace, name)) = verify_offline(&config, b"", &token) {
                check_accepted(&config, &claims, &namespace, &name);
            }
            // The same token through the JWKS path must get the same answer.
            let via_jwks = verify_offline(
                &Config {
                    pem_keys: Vec::new(),
                    ..config.clone()
                },
                jwks().as_bytes(),
                &token,
            );
            assert_eq!(
                via_jwks.is_ok(),
                verify_offline(&config, b"", &token).is_ok()
            );
        }
        2 => {
            config.disable_iss_validation = false;
            config.issuer.clear();
            if verify_offline(&config, payload, TOKEN).is_ok() {
                assert!(
                    holds_test_key(payload),
                    "a JWKS without the test key verified"
                );
            }
        }
        _ => {
            let _ = verify_offline(&config, jwks().as_bytes(), &text);
        }
    }
});

fn check_accepted(config: &Config, claims: &Value, namespace: &str, name: &str) {
    assert!(!namespace.is_empty() && !name.is_empty());
    assert_eq!(
        claims.get("sub").and_then(Value::as_str),
        Some(format!("system:serviceaccount:{namespace}:{name}").as_str()),
        "accepted a token whose sub does not name its ServiceAccount"
    );
    if !config.disable_iss_validation {
        let iss = claims.get("iss").and_then(Value::as_str);
        let ok = if config.issuer.is_empty() {
            iss.is_some_and(|i| DEFAULT_ISSUERS.contains(&i))
        } else {
            iss == Some(config.issuer.as_str())
        };
        assert!(ok, "accepted issuer {iss:?}");
    }
    let now = chrono::Utc::now().timestamp() as f64;
    match claims.get("exp") {
        Some(exp) => {
            let exp = exp.as_f64().expect("accepted a non-numeric exp");
            assert!(exp + 30.0 >= now, "accepted an expired token");
        }
        None => assert!(
            !config.token_reviewer_jwt.is_empty(),
            "accepted a token without exp"
        ),
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("accepted a non-numeric nbf");
        assert!(nbf - 30.0 <= now + 5.0, "accepted a token before its nbf");
    }
}

/// Whether a JWKS document holds the test public key (coordinates compared as bytes).
fn holds_test_key(jwks: &[u8]) -> bool {
    let decode = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()
    };
    let Ok(doc) = serde_json::from_slice::<Value>(jwks) else {
        return false;
    };
    doc.get("keys")
        .and_then(Value::as_array)
        .is_some_and(|keys| {
            keys.iter().any(|k| {
                let coord = |c: &str| k.get(c).and_then(Value::as_str).and_then(decode);
                coord("x") == decode(X) && coord("y") == decode(Y)
            })
        })
}
