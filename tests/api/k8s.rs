//! A test-only Kubernetes: signing keys made with the `openssl` CLI for this test process,
//! ServiceAccount JWTs signed here, and a fake API server that publishes the keys at
//! `/openid/v1/jwks` and answers TokenReview. No cluster is involved.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The issuer the tests' tokens carry (kubeadm's default).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A key pair: the private PEM signs, the public PEM goes into `pem_keys`.
#[derive(Clone)]
pub struct KeyPair {
    /// PKCS#8 private key.
    pub private_pem: String,
    /// SubjectPublicKeyInfo public key.
    pub public_pem: String,
    /// A self-signed certificate of the key (hvac accepts only certificates in `pem_keys`).
    pub cert_pem: String,
    /// The signing algorithm family's default for this key.
    pub alg: Algorithm,
}

fn openssl(args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the openssl CLI is needed to make test keys");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn generate(kind: &str) -> KeyPair {
    let (args, alg): (&[&str], Algorithm) = match kind {
        "rsa" => (
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            Algorithm::RS256,
        ),
        "ec256" => (
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            Algorithm::ES256,
        ),
        "ec384" => (
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ],
            Algorithm::ES384,
        ),
        other => panic!("unknown key kind {other}"),
    };
    let private_pem = openssl(args, None);
    let public_pem = openssl(&["pkey", "-pubout"], Some(&private_pem));
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, &private_pem).unwrap();
    let cert_pem = openssl(
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            key_path.to_str().unwrap(),
            "-subj",
            "/CN=service-account-signer",
            "-days",
            "2",
        ],
        None,
    );
    KeyPair {
        private_pem,
        public_pem,
        cert_pem,
        alg,
    }
}

/// The keys of this test process (made once: RSA generation takes a moment).
pub struct Keys {
    /// The cluster's RSA key.
    pub rsa: KeyPair,
    /// The cluster's P-256 key.
    pub ec: KeyPair,
    /// A P-384 key.
    pub ec384: KeyPair,
    /// A second RSA key (rotation), not trusted unless published.
    pub rsa2: KeyPair,
    /// An attacker's RSA key, never trusted.
    pub attacker: KeyPair,
}

/// The shared test keys.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: generate("rsa"),
        ec: generate("ec256"),
        ec384: generate("ec384"),
        rsa2: generate("rsa"),
        attacker: generate("rsa"),
    })
}

fn encoding_key(key: &KeyPair) -> EncodingKey {
    match key.alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(key.private_pem.as_bytes()).unwrap()
        }
        _ => EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap(),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a projected ServiceAccount token for `ns`/`name`, audience `aud`, valid for
/// `ttl` seconds from now (negative: already expired).
pub fn claims(ns: &str, name: &str, aud: &str, ttl: i64) -> Value {
    json!({
        "iss": ISSUER,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
        "aud": [aud],
        "iat": now() - 5,
        "nbf": now() - 5,
        "exp": now() + ttl,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": {
            "namespace": ns,
            "pod": {"name": format!("{name}-pod"), "uid": "pod-uid-1"},
            "serviceaccount": {"name": name, "uid": format!("uid-{ns}-{name}")},
        },
    })
}

/// Signs `claims` with `key` using `alg`, naming key id `kid` in the header.
pub fn sign(key: &KeyPair, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding_key(key)).unwrap()
}

/// A good RS256 token for `ns`/`name` with audience `vault`, valid for an hour.
pub fn token(ns: &str, name: &str) -> String {
    sign(
        &keys().rsa,
        Algorithm::RS256,
        None,
        &claims(ns, name, "vault", 3600),
    )
}

/// The public JWK of a key, with a key id.
pub fn jwk(key: &KeyPair, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(key), key.alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

/// A JWKS document of the given JWKs.
pub fn jwks(keys: Vec<Value>) -> Value {
    let set = JwkSet {
        keys: keys
            .into_iter()
            .map(|k| serde_json::from_value(k).unwrap())
            .collect(),
    };
    serde_json::to_value(set).unwrap()
}

/// What the fake API server saw and will answer.
#[derive(Default)]
pub struct ApiState {
    /// The JWKS document served.
    pub jwks: Mutex<Value>,
    /// JWKS requests served.
    pub jwks_fetches: AtomicUsize,
    /// Whether TokenReview authenticates tokens.
    pub review_authenticates: Mutex<bool>,
    /// TokenReview requests (body and Authorization header).
    pub reviews: Mutex<Vec<(Value, String)>>,
}

/// A fake Kubernetes API server on 127.0.0.1 (plain HTTP).
pub struct FakeApiServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Shared state.
    pub state: Arc<ApiState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Starts serving `jwks`; TokenReview authenticates until told otherwise.
    pub async fn start(jwks: Value) -> FakeApiServer {
        use axum::extract::State;
        use axum::http::HeaderMap;
        use axum::routing::{get, post};

        let state = Arc::new(ApiState {
            jwks: Mutex::new(jwks),
            review_authenticates: Mutex::new(true),
            ..Default::default()
        });
        let app = axum::Router::new()
            .route(
                "/openid/v1/jwks",
                get(|State(s): State<Arc<ApiState>>| async move {
                    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(s.jwks.lock().unwrap().clone())
                }),
            )
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                post(
                    |State(s): State<Arc<ApiState>>,
                     headers: HeaderMap,
                     axum::Json(body): axum::Json<Value>| async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        s.reviews.lock().unwrap().push((body.clone(), auth));
                        let token = body["spec"]["token"].as_str().unwrap_or_default();
                        let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
                            .unwrap_or(Value::Null);
                        let ok = *s.review_authenticates.lock().unwrap();
                        axum::Json(json!({
                            "apiVersion": "authentication.k8s.io/v1",
                            "kind": "TokenReview",
                            "status": if ok {
                                json!({"authenticated": true, "user": {
                                    "username": claims["sub"],
                                    "uid": claims["kubernetes.io"]["serviceaccount"]["uid"],
                                }})
                            } else {
                                json!({"authenticated": false, "error": "token has been invalidated"})
                            },
                        }))
                    },
                ),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { url, state, task }
    }

    /// JWKS requests served so far.
    pub fn fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }
}
