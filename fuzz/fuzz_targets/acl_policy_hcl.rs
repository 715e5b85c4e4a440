//! ACL policies (`dbwarden::auth::policy`): HCL and JSON parsing, compilation into an `Acl`
//! and path matching.
//!
//! Input: fields separated by 0xFF: `policy source 0xFF request path`.
//!
//! Properties: `deny` is never granted; `capabilities` is `["deny"]` or an alphabetically sorted set of
//! real capabilities, and lists `list` whenever a LIST is allowed; an exact-path `deny` rule in
//! another policy always wins over the fuzzed policy, and an exact-path grant in its own
//! policy is always honoured.
#![no_main]

use dbwarden::auth::policy::{Acl, Capability, Policy};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const CAPS: [Capability; 8] = [
    Capability::Create,
    Capability::Read,
    Capability::Update,
    Capability::Patch,
    Capability::Delete,
    Capability::List,
    Capability::Sudo,
    Capability::Deny,
];

fuzz_target!(|data: &[u8]| {
    let mut parts = data
        .split(|&b| b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let source = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();

    let Ok(policy) = Policy::parse("fuzz", &source) else {
        return;
    };
    assert_eq!(policy.raw, source);
    let acl = Acl::new(std::slice::from_ref(&policy));
    for cap in CAPS {
        let decision = acl.allowed(&path, cap);
        if cap == Capability::Deny {
            assert!(!decision.allowed, "deny granted");
        }
        if decision.allowed {
            assert_eq!(decision.granting_policies, ["fuzz"]);
        }
    }
    let caps = acl.capabilities(&path);
    assert!(!caps.is_empty());
    if caps != ["deny"] {
        assert!(caps.windows(2).all(|w| w[0] < w[1]), "not sorted: {caps:?}");
        assert!(
            caps.iter()
                .all(|c| CAPS.iter().any(|k| k.as_str() == *c) && *c != "deny")
        );
    }
    if acl.allowed(&path, Capability::List).allowed {
        assert!(
            caps.contains(&"list"),
            "LIST allowed but not reported: {caps:?}"
        );
    }

    // Exact rules for the request path itself (no glob or segment wildcard in it).
    let exact = path.trim_start_matches('/');
    if exact.is_empty() || exact.contains(['*', '+']) || exact.contains("{{") {
        return;
    }
    let rule = |caps: &[&str]| json!({ "path": { exact: { "capabilities": caps } } }).to_string();
    let deny = Policy::parse("deny-it", &rule(&["deny"])).expect("deny policy parses");
    let both = Acl::new(&[policy, deny]);
    for cap in CAPS {
        assert!(
            !both.allowed(&path, cap).allowed,
            "deny on the exact path lost to {source:?}"
        );
    }
    assert_eq!(both.capabilities(&path), ["deny"]);
    let grant = Policy::parse("grant", &rule(&["read", "list"])).expect("grant policy parses");
    let acl = Acl::new(&[grant]);
    assert!(acl.allowed(&path, Capability::Read).allowed);
    assert!(acl.allowed(&format!("{exact}/"), Capability::List).allowed || exact.ends_with('/'));
});
