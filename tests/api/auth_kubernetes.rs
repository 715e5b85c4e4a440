//! Kubernetes auth: the JWT is always verified (PEM keys or JWKS), and every claim matters.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::k8s::{self, FakeApiServer, claims, keys, sign};
use crate::support::{Client, Server};

async fn login(c: &Client, mount: &str, role: &str, jwt: &str) -> (u16, Value) {
    c.anonymous()
        .call(
            "POST",
            &format!("auth/{mount}/login"),
            Some(json!({"role": role, "jwt": jwt})),
        )
        .await
}

async fn assert_refused(c: &Client, jwt: &str, what: &str, message: &str) {
    let (status, body) = login(c, "kubernetes", "app", jwt).await;
    assert_eq!(status, 403, "{what}: {body}");
    let text = body["errors"][0].as_str().unwrap_or_default();
    assert!(text.contains(message), "{what}: {body}");
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn pem_keys_verify_signature_claims_and_bindings() {
    let server = Server::dev();
    let root = server.client();
    let k = keys();
    root.ok(
        "POST",
        "sys/auth/kubernetes",
        Some(json!({"type": "kubernetes"})),
    )
    .await;
    root.ok(
        "POST",
        "auth/kubernetes/config",
        Some(json!({
            "kubernetes_host": "https://127.0.0.1:1",
            "pem_keys": [k.rsa.public_pem, k.ec.public_pem, k.ec384.public_pem],
        })),
    )
    .await;
    // A key that is not a PEM public key is refused when configured.
    let (status, _) = root
        .call(
            "POST",
            "auth/kubernetes/config",
            Some(
                json!({"pem_keys": ["-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"]}),
            ),
        )
        .await;
    assert_eq!(status, 400);
    root.ok(
        "POST",
        "auth/kubernetes/role/app",
        Some(json!({
            "bound_service_account_names": ["app-*"],
            "bound_service_account_namespaces": "team-a,team-b",
            "audience": "vault",
            "token_policies": "db-ro",
            "token_ttl": "1h",
        })),
    )
    .await;
    let role = root.ok("GET", "auth/kubernetes/role/app", None).await;
    assert_eq!(role["data"]["token_ttl"], 3600);
    assert_eq!(role["data"]["ttl"], 3600);
    assert_eq!(
        role["data"]["bound_service_account_namespaces"],
        json!(["team-a", "team-b"])
    );

    // Good tokens: RSA (RS256 and PS256) and EC (ES256, ES384).
    let good = [
        sign(
            &k.rsa,
            Algorithm::RS256,
            None,
            &claims("team-a", "app-web", "vault", 600),
        ),
        sign(
            &k.rsa,
            Algorithm::PS256,
            None,
            &claims("team-b", "app-web", "vault", 600),
        ),
        sign(
            &k.rsa,
            Algorithm::RS512,
            None,
            &claims("team-a", "app-api", "vault", 600),
        ),
        sign(
            &k.ec,
            Algorithm::ES256,
            Some("any"),
            &claims("team-a", "app-web", "vault", 600),
        ),
        sign(
            &k.ec384,
            Algorithm::ES384,
            None,
            &claims("team-a", "app-web", "vault", 600),
        ),
    ];
    for jwt in &good {
        let (status, body) = login(&root, "kubernetes", "app", jwt).await;
        assert_eq!(status, 200, "{body}");
        let auth = &body["auth"];
        assert_eq!(auth["policies"], json!(["db-ro", "default"]));
        assert_eq!(auth["lease_duration"], 3600);
        assert_eq!(auth["orphan"], true);
        assert_eq!(auth["metadata"]["role"], "app");
        assert!(
            auth["metadata"]["service_account_uid"]
                .as_str()
                .unwrap()
                .starts_with("uid-")
        );
    }
    let (_, body) = login(&root, "kubernetes", "app", &good[0]).await;
    let token = body["auth"]["client_token"].as_str().unwrap();
    let me = root
        .with_token(token)
        .ok("GET", "auth/token/lookup-self", None)
        .await;
    assert_eq!(me["data"]["display_name"], "kubernetes-team-a-app-web");
    assert_eq!(me["data"]["path"], "auth/kubernetes/login");
    assert_eq!(me["data"]["meta"]["service_account_namespace"], "team-a");

    // Legacy Secret-based claims work too (when they carry an expiry).
    let mut legacy = json!({
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:team-a:app-legacy",
        "exp": chrono::Utc::now().timestamp() + 600,
        "kubernetes.io/serviceaccount/namespace": "team-a",
        "kubernetes.io/serviceaccount/service-account.name": "app-legacy",
        "kubernetes.io/serviceaccount/secret.name": "app-legacy-token-x",
        "kubernetes.io/serviceaccount/service-account.uid": "uid-legacy",
    });
    root.ok("POST", "auth/kubernetes/role/legacy", Some(json!({
        "bound_service_account_names": "app-legacy", "bound_service_account_namespaces": "team-a"})))
        .await;
    let (status, body) = login(
        &root,
        "kubernetes",
        "legacy",
        &sign(&k.rsa, Algorithm::RS256, None, &legacy),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["auth"]["metadata"]["service_account_secret_name"],
        "app-legacy-token-x"
    );
    // ... but never without one: nothing else would limit such a token's life.
    legacy.as_object_mut().unwrap().remove("exp");
    let (status, _) = login(
        &root,
        "kubernetes",
        "legacy",
        &sign(&k.rsa, Algorithm::RS256, None, &legacy),
    )
    .await;
    assert_eq!(status, 403);

    // Refusals.
    let c = |ns: &str, name: &str, aud: &str, ttl: i64| claims(ns, name, aud, ttl);
    assert_refused(
        &root,
        &sign(
            &k.attacker,
            Algorithm::RS256,
            None,
            &c("team-a", "app-web", "vault", 600),
        ),
        "foreign key",
        "permission denied",
    )
    .await;
    assert_refused(
        &root,
        &sign(
            &k.rsa,
            Algorithm::RS256,
            None,
            &c("team-a", "app-web", "other", 600),
        ),
        "wrong audience",
        "audience",
    )
    .await;
    assert_refused(
        &root,
        &sign(
            &k.rsa,
            Algorithm::RS256,
            None,
            &c("team-a", "app-web", "vault", -120),
        ),
        "expired",
        "expired",
    )
    .await;
    assert_refused(
        &root,
        &sign(
            &k.rsa,
            Algorithm::RS256,
            None,
            &c("team-c", "app-web", "vault", 600),
        ),
        "unbound namespace",
        "namespace not authorized",
    )
    .await;
    assert_refused(
        &root,
        &sign(
            &k.rsa,
            Algorithm::RS256,
            None,
            &c("team-a", "db-admin", "vault", 600),
        ),
        "unbound name",
        "service account name not authorized",
    )
    .await;
    let mut future = c("team-a", "app-web", "vault", 6000);
    future["nbf"] = json!(chrono::Utc::now().timestamp() + 3000);
    assert_refused(
        &root,
        &sign(&k.rsa, Algorithm::RS256, None, &future),
        "not yet valid",
        "not yet valid",
    )
    .await;
    let mut other_issuer = c("team-a", "app-web", "vault", 600);
    other_issuer["iss"] = json!("https://evil.example");
    assert_refused(
        &root,
        &sign(&k.rsa, Algorithm::RS256, None, &other_issuer),
        "issuer",
        "issuer",
    )
    .await;
    let mut lying_sub = c("team-a", "app-web", "vault", 600);
    lying_sub["sub"] = json!("system:serviceaccount:kube-system:app-web");
    assert_refused(
        &root,
        &sign(&k.rsa, Algorithm::RS256, None, &lying_sub),
        "sub mismatch",
        "permission denied",
    )
    .await;
    // A signed token whose payload was swapped afterwards.
    let genuine = sign(
        &k.rsa,
        Algorithm::RS256,
        None,
        &c("team-c", "app-web", "vault", 600),
    );
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&c("team-a", "app-web", "vault", 600)),
        parts[2]
    );
    assert_refused(&root, &forged, "tampered payload", "permission denied").await;
    // `none` and HMAC algorithms are never accepted.
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&c("team-a", "app-web", "vault", 600))
    );
    assert_refused(&root, &unsigned, "alg none", "permission denied").await;
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &c("team-a", "app-web", "vault", 600),
        &jsonwebtoken::EncodingKey::from_secret(k.rsa.public_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_refused(
        &root,
        &hs,
        "HS256 with the public key as secret",
        "permission denied",
    )
    .await;
    assert_refused(&root, "not-a-jwt", "garbage", "permission denied").await;

    // Bad requests are 400, not 403.
    let (status, _) = login(&root, "kubernetes", "missing", &good[0]).await;
    assert_eq!(status, 400);
    let (status, _) = login(&root, "kubernetes", "app", "").await;
    assert_eq!(status, 400);
    // Role listing and config read (which never shows a reviewer JWT).
    let roles = root.ok("LIST", "auth/kubernetes/role", None).await;
    assert_eq!(roles["data"]["keys"], json!(["app", "legacy"]));
    let config = root.ok("GET", "auth/kubernetes/config", None).await;
    assert_eq!(config["data"]["token_reviewer_jwt_set"], false);
    assert_eq!(config["data"]["pem_keys"].as_array().unwrap().len(), 3);
    // Binding both names and namespaces to "*" is refused, as in Vault.
    let (status, _) = root
        .call(
            "POST",
            "auth/kubernetes/role/all",
            Some(json!({
            "bound_service_account_names": "*", "bound_service_account_namespaces": "*"})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn jwks_keys_are_fetched_cached_and_refreshed_on_unknown_kid() {
    let k = keys();
    let api = FakeApiServer::start(k8s::jwks(vec![k8s::jwk(&k.rsa, "k1")])).await;
    let server = Server::dev();
    let root = server.client();
    root.ok(
        "POST",
        "sys/auth/k8s/prod",
        Some(json!({"type": "kubernetes"})),
    )
    .await;
    root.ok(
        "POST",
        "auth/k8s/prod/config",
        Some(json!({"kubernetes_host": api.url, "issuer": k8s::ISSUER, "jwks_min_refresh_interval": "1s"})),
    )
    .await;
    root.ok(
        "POST",
        "auth/k8s/prod/role/app",
        Some(json!({"bound_service_account_names": "app", "bound_service_account_namespaces": "prod"})),
    )
    .await;
    let with = |key: &k8s::KeyPair, kid: &str| {
        sign(
            key,
            Algorithm::RS256,
            Some(kid),
            &claims("prod", "app", "vault", 600),
        )
    };
    let (status, body) = login(&root, "k8s/prod", "app", &with(&k.rsa, "k1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.fetches(), 1);
    // The display name starts with the mount path, as in Vault.
    let token = body["auth"]["client_token"].as_str().unwrap();
    let me = root
        .with_token(token)
        .ok("GET", "auth/token/lookup-self", None)
        .await;
    assert_eq!(me["data"]["display_name"], "k8s-prod-prod-app");
    // Cached: a second login fetches nothing.
    let (status, _) = login(&root, "k8s/prod", "app", &with(&k.rsa, "k1")).await;
    assert_eq!(status, 200);
    assert_eq!(api.fetches(), 1);

    // The cluster rotates to a new key: a token naming it triggers a refresh.
    *api.state.jwks.lock().unwrap() =
        k8s::jwks(vec![k8s::jwk(&k.rsa, "k1"), k8s::jwk(&k.rsa2, "k2")]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = login(&root, "k8s/prod", "app", &with(&k.rsa2, "k2")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.fetches(), 2);

    // Unknown key ids cannot make it hammer the API server: one fetch per interval.
    let (status, _) = login(&root, "k8s/prod", "app", &with(&k.attacker, "k9")).await;
    assert_eq!(status, 403);
    let (status, _) = login(&root, "k8s/prod", "app", &with(&k.attacker, "k9")).await;
    assert_eq!(status, 403);
    assert_eq!(api.fetches(), 2, "refetched within the minimum interval");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = login(&root, "k8s/prod", "app", &with(&k.attacker, "k9")).await;
    assert_eq!(status, 403);
    assert_eq!(api.fetches(), 3);
    // An attacker's key with a trusted key id is still refused.
    let (status, _) = login(&root, "k8s/prod", "app", &with(&k.attacker, "k1")).await;
    assert_eq!(status, 403);
    // An unreachable JWKS endpoint with nothing cached refuses every login.
    root.ok(
        "POST",
        "sys/auth/k8s/down",
        Some(json!({"type": "kubernetes"})),
    )
    .await;
    root.ok(
        "POST",
        "auth/k8s/down/config",
        Some(json!({"kubernetes_host": "http://127.0.0.1:1"})),
    )
    .await;
    root.ok(
        "POST",
        "auth/k8s/down/role/app",
        Some(json!({
        "bound_service_account_names": "app", "bound_service_account_namespaces": "prod"})),
    )
    .await;
    let (status, _) = login(&root, "k8s/down", "app", &with(&k.rsa, "k1")).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn token_review_runs_only_when_a_reviewer_jwt_is_set() {
    let k = keys();
    let api = FakeApiServer::start(k8s::jwks(vec![k8s::jwk(&k.rsa, "k1")])).await;
    let server = Server::dev();
    let root = server.client();
    root.ok(
        "POST",
        "sys/auth/kubernetes",
        Some(json!({"type": "kubernetes"})),
    )
    .await;
    root.ok(
        "POST",
        "auth/kubernetes/config",
        Some(json!({"kubernetes_host": api.url, "pem_keys": k.rsa.public_pem})),
    )
    .await;
    root.ok(
        "POST",
        "auth/kubernetes/role/app",
        Some(
            json!({"bound_service_account_names": "app", "bound_service_account_namespaces": "ns",
                    "audience": "vault"}),
        ),
    )
    .await;
    let jwt = k8s::token("ns", "app");
    let (status, _) = login(&root, "kubernetes", "app", &jwt).await;
    assert_eq!(status, 200);
    assert!(
        api.state.reviews.lock().unwrap().is_empty(),
        "no reviewer, no TokenReview"
    );

    let reviewer = "reviewer-jwt-for-test-0123456789";
    root.ok(
        "POST",
        "auth/kubernetes/config",
        Some(json!({"token_reviewer_jwt": reviewer})),
    )
    .await;
    let config = root.ok("GET", "auth/kubernetes/config", None).await;
    assert_eq!(config["data"]["token_reviewer_jwt_set"], true);
    assert!(!config.to_string().contains(reviewer));
    let (status, body) = login(&root, "kubernetes", "app", &jwt).await;
    assert_eq!(status, 200, "{body}");
    {
        let reviews = api.state.reviews.lock().unwrap();
        assert_eq!(reviews.len(), 1);
        assert_eq!(reviews[0].1, format!("Bearer {reviewer}"));
        assert_eq!(reviews[0].0["spec"]["token"], jwt.as_str());
        assert_eq!(reviews[0].0["spec"]["audiences"], json!(["vault"]));
    }
    // Kubernetes says the token is no longer valid (its pod is gone): refused.
    *api.state.review_authenticates.lock().unwrap() = false;
    let (status, _) = login(&root, "kubernetes", "app", &jwt).await;
    assert_eq!(status, 403);
}
