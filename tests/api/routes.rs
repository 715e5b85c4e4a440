//! Walks the route table: every endpoint refuses a request without a token, and one whose
//! policies do not allow the path, with 403.

use serde_json::json;

use crate::support::Server;

/// Every (method, path) the server serves, with placeholders filled in. Login endpoints
/// and `sys/health`, `sys/seal-status`, `sys/leader` are unauthenticated by design.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "sys/mounts"),
    ("POST", "sys/mounts/db2"),
    ("GET", "sys/mounts/database"),
    ("DELETE", "sys/mounts/database"),
    ("GET", "sys/mounts/database/tune"),
    ("POST", "sys/mounts/database/tune"),
    ("GET", "sys/policy"),
    ("GET", "sys/policy/default"),
    ("PUT", "sys/policy/p"),
    ("DELETE", "sys/policy/p"),
    ("LIST", "sys/policies/acl"),
    ("GET", "sys/policies/acl/default"),
    ("PUT", "sys/policies/acl/p"),
    ("DELETE", "sys/policies/acl/p"),
    ("LIST", "sys/policies/password"),
    ("GET", "sys/policies/password/p"),
    ("PUT", "sys/policies/password/p"),
    ("DELETE", "sys/policies/password/p"),
    ("GET", "sys/policies/password/p/generate"),
    ("LIST", "sys/leases/lookup/database/creds"),
    ("GET", "sys/leases?type=irrevocable"),
    ("GET", "sys/leases/count"),
    ("POST", "sys/leases/tidy"),
    ("PUT", "sys/leases/revoke"),
    ("PUT", "sys/leases/revoke-prefix/database"),
    ("PUT", "sys/leases/revoke-force/database"),
    ("POST", "sys/rotate"),
    ("GET", "sys/key-status"),
    ("GET", "sys/metrics"),
    ("GET", "sys/audit"),
    ("PUT", "sys/audit/file"),
    ("DELETE", "sys/audit/file"),
    ("POST", "sys/audit-hash/file"),
    ("POST", "sys/control-group/authorize"),
    ("POST", "auth/token/create"),
    ("POST", "auth/token/create-orphan"),
    ("POST", "auth/token/lookup"),
    ("POST", "auth/token/lookup-accessor"),
    ("POST", "auth/token/renew"),
    ("POST", "auth/token/renew-accessor"),
    ("POST", "auth/token/revoke"),
    ("POST", "auth/token/revoke-accessor"),
    ("LIST", "auth/token/accessors"),
    ("LIST", "database/config"),
    ("GET", "database/config/pg"),
    ("POST", "database/config/pg"),
    ("DELETE", "database/config/pg"),
    ("POST", "database/reset/pg"),
    ("POST", "database/rotate-root/pg"),
    ("LIST", "database/roles"),
    ("GET", "database/roles/ro"),
    ("POST", "database/roles/ro"),
    ("DELETE", "database/roles/ro"),
    ("GET", "database/creds/ro"),
    ("LIST", "database/static-roles"),
    ("GET", "database/static-roles/s"),
    ("POST", "database/static-roles/s"),
    ("DELETE", "database/static-roles/s"),
    ("GET", "database/static-creds/s"),
    ("POST", "database/rotate-role/s"),
    ("LIST", "database/hooks"),
    ("GET", "database/hooks/h"),
    ("POST", "database/hooks/h"),
    ("DELETE", "database/hooks/h"),
];

/// Paths the `default` policy grants (as in Vault).
const DEFAULT_ALLOWED: &[&str] = &[
    "auth/token/lookup-self",
    "auth/token/renew-self",
    "auth/token/revoke-self",
    "sys/capabilities-self",
    "sys/leases/renew",
    "sys/leases/lookup",
    "sys/wrapping/lookup",
    "sys/wrapping/unwrap",
    "sys/control-group/request",
];

#[tokio::test]
async fn every_route_refuses_missing_and_insufficient_tokens() {
    let server = Server::dev();
    let root = server.client();
    let created = root
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"]})),
        )
        .await;
    let limited = root.with_token(created["auth"]["client_token"].as_str().unwrap());
    let mut anonymous = root.clone();
    anonymous.token = None;
    for (method, path) in ROUTES {
        let bare = path.split('?').next().unwrap();
        assert!(
            !DEFAULT_ALLOWED.contains(&bare),
            "{path} is granted by default; test it elsewhere"
        );
        let (status, body) = anonymous.call(method, path, Some(json!({}))).await;
        assert_eq!(status, 403, "{method} {path} without a token: {body}");
        let (status, body) = limited.call(method, path, Some(json!({}))).await;
        assert_eq!(
            status, 403,
            "{method} {path} with only the default policy: {body}"
        );
    }
    // And the default policy's own paths work for that token, but not anonymously.
    for path in ["auth/token/lookup-self"] {
        let (status, _) = anonymous.call("GET", path, None).await;
        assert_eq!(status, 403);
        limited.ok("GET", path, None).await;
    }
}
