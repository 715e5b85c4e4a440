//! The Secrets Store CSI provider over its unix socket, as the driver calls it: `Version`,
//! then `Mount` with a realistic attributes JSON and a test-signed ServiceAccount token; a
//! second `Mount` for the same Pod renews the cached lease instead of minting; a lease near
//! its maximum is replaced and reported with a new object version.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dbwarden::csi::proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use dbwarden::csi::proto::v1alpha1::{MountRequest, MountResponse, VersionRequest};
use dbwarden_testkit::TempPostgres;
use serde_json::json;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::agent::{kubernetes_auth, leases, lookup, poll, role};
use crate::k8s;
use crate::postgres::{prepare_db, register};
use crate::support::Server;

/// A running `dbwarden csi-provider`.
struct ProviderProcess {
    child: Child,
    log_path: PathBuf,
}

impl ProviderProcess {
    fn start(socket: &Path, extra: &[&str]) -> ProviderProcess {
        let log_path = socket.with_extension("log");
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dbwarden"))
            .args(["csi-provider", "--endpoint", socket.to_str().unwrap()])
            .args(extra)
            .env("DBWARDEN_LOG", "dbwarden=debug,info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start the CSI provider");
        ProviderProcess { child, log_path }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gRPC channel over the unix socket (the URI is a placeholder; the connector dials the
/// socket, as the driver does with `unix://`).
async fn connect(socket: &Path) -> CsiDriverProviderClient<Channel> {
    let socket = socket.to_owned();
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect to the provider socket");
    CsiDriverProviderClient::new(channel)
}

/// The attributes the driver sends: the SecretProviderClass parameters plus the Pod's
/// identity and its ServiceAccount token for audience `dbwarden`.
fn attributes(address: &str, role: &str, db_role: &str, pod_uid: &str) -> String {
    // The kubelet mints a fresh token for every NodePublishVolume call.
    let jwt = k8s::sign(
        &k8s::keys().ec,
        jsonwebtoken::Algorithm::ES256,
        None,
        &k8s::claims("shop", "web", "dbwarden", 600),
    );
    let objects = format!(
        "- objectName: db-user\n  secretPath: database/creds/{db_role}\n  secretKey: username\n\
         - objectName: db-pass\n  secretPath: database/creds/{db_role}\n  secretKey: password\n  filePermission: \"0400\"\n\
         - objectName: creds\n  fileName: creds.json\n  secretPath: database/creds/{db_role}\n"
    );
    json!({
        "roleName": role,
        "vaultAddress": address,
        "vaultKubernetesMountPath": "kubernetes",
        "audience": "dbwarden",
        "objects": objects,
        "secretProviderClass": "order-db",
        "csi.storage.k8s.io/pod.name": "web-7d9f",
        "csi.storage.k8s.io/pod.namespace": "shop",
        "csi.storage.k8s.io/pod.uid": pod_uid,
        "csi.storage.k8s.io/serviceAccount.name": "web",
        "csi.storage.k8s.io/ephemeral": "false",
        "csi.storage.k8s.io/serviceAccount.tokens": json!({
            "dbwarden": {"token": jwt, "expirationTimestamp": "2030-01-01T00:00:00Z"}
        }).to_string(),
    })
    .to_string()
}

async fn mount(client: &mut CsiDriverProviderClient<Channel>, attributes: String) -> MountResponse {
    client
        .mount(MountRequest {
            attributes,
            secrets: "{}".into(),
            target_path: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/secrets/mount".into(),
            permission: "420".into(),
            current_object_version: Vec::new(),
        })
        .await
        .expect("mount")
        .into_inner()
}

fn file(response: &MountResponse, path: &str) -> (String, i32) {
    let f = response
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no file {path}"));
    (String::from_utf8(f.contents.clone()).unwrap(), f.mode)
}

fn versions(response: &MountResponse) -> Vec<(String, String)> {
    response
        .object_version
        .iter()
        .map(|v| (v.id.clone(), v.version.clone()))
        .collect()
}

#[tokio::test]
async fn csi_mount_returns_working_credentials_and_renews_on_the_next_poll() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    role(&root, "web", "1h", "2h").await;
    kubernetes_auth(&root, "web", "shop", "web", "dbwarden", "web").await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("providers/dbwarden.sock");
    let provider = ProviderProcess::start(&socket, &[]);
    let ready = poll(Duration::from_secs(10), async || {
        socket.exists().then_some(())
    })
    .await;
    assert!(ready.is_some(), "no socket: {}", provider.log());
    let mut client = connect(&socket).await;

    let version = client
        .version(VersionRequest {
            version: "v1.4.0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "dbwarden");
    assert_eq!(version.version, "v1alpha1");
    assert_eq!(version.runtime_version, env!("CARGO_PKG_VERSION"));

    let first = mount(&mut client, attributes(&server.addr, "web", "web", "pod-1")).await;
    let (user, user_mode) = file(&first, "db-user");
    let (pass, pass_mode) = file(&first, "db-pass");
    assert_eq!(user_mode, 0o644, "the driver's permission (420 decimal)");
    assert_eq!(pass_mode, 0o400, "the object's filePermission");
    let (creds, _) = file(&first, "creds.json");
    let creds: serde_json::Value = serde_json::from_str(&creds).unwrap();
    assert_eq!(creds["username"], user.as_str());
    let session = pg
        .connect_as(&db, &user, &pass)
        .await
        .expect("the mounted credentials log in");
    let row = session.query_one("SELECT v FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let v1 = versions(&first);
    assert_eq!(
        v1.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["db-user", "db-pass", "creds"]
    );
    let lease = leases(&root, "web").await;
    assert_eq!(lease.len(), 1, "one lease for the three objects");
    assert!(lookup(&root, &lease[0]).await.unwrap()["last_renewal"].is_null());

    // The rotation poll: same Pod, fresh ServiceAccount token. Same credential, renewed.
    let second = mount(&mut client, attributes(&server.addr, "web", "web", "pod-1")).await;
    assert_eq!(file(&second, "db-user").0, user);
    assert_eq!(file(&second, "db-pass").0, pass);
    assert_eq!(versions(&second), v1, "unchanged object versions");
    assert_eq!(leases(&root, "web").await, lease, "no second lease");
    assert!(
        lookup(&root, &lease[0]).await.unwrap()["last_renewal"].is_string(),
        "the lease was renewed"
    );
    assert_eq!(
        provider.log().matches("logged in for the pod").count(),
        1,
        "the token is cached per Pod"
    );

    // Another Pod gets its own credential.
    let other = mount(&mut client, attributes(&server.addr, "web", "web", "pod-2")).await;
    assert_ne!(file(&other, "db-user").0, user);
    assert_eq!(leases(&root, "web").await.len(), 2);

    // Without Kubernetes auth: a dbwarden token from the volume's nodePublishSecretRef.
    let token = crate::agent::agent_token(&root, "web").await;
    let mut attrs: serde_json::Value =
        serde_json::from_str(&attributes(&server.addr, "web", "web", "pod-3")).unwrap();
    attrs["authMethod"] = json!("token");
    let by_token = client
        .mount(MountRequest {
            attributes: attrs.to_string(),
            secrets: json!({ "token": token }).to_string(),
            permission: "420".into(),
            ..Default::default()
        })
        .await
        .expect("mount with a token from nodePublishSecretRef")
        .into_inner();
    let (token_user, _) = file(&by_token, "db-user");
    pg.connect_as(&db, &token_user, &file(&by_token, "db-pass").0)
        .await
        .expect("credentials fetched with the Secret's token log in");
    assert_eq!(leases(&root, "web").await.len(), 3);

    // Bad requests are refused with InvalidArgument, and no secret is echoed.
    let status = client
        .mount(MountRequest {
            attributes: json!({"objects": "[]", "csi.storage.k8s.io/pod.uid": "x"}).to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("roleName"), "{status:?}");
    let log = provider.log();
    assert!(!log.contains(&pass), "password in the provider log");
    assert!(!log.contains(&token), "token in the provider log");
}

#[tokio::test]
async fn csi_replaces_a_lease_near_its_max_with_a_new_object_version() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    role(&root, "brief", "4s", "8s").await;
    kubernetes_auth(&root, "brief", "shop", "web", "dbwarden", "brief").await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dbwarden.sock");
    let provider = ProviderProcess::start(&socket, &["--rotate-threshold", "0.5"]);
    let ready = poll(Duration::from_secs(10), async || {
        socket.exists().then_some(())
    })
    .await;
    assert!(ready.is_some(), "no socket: {}", provider.log());
    let mut client = connect(&socket).await;
    let attrs = || attributes(&server.addr, "brief", "brief", "pod-r");

    let first = mount(&mut client, attrs()).await;
    let old_user = file(&first, "db-user").0;
    let old_lease = leases(&root, "brief").await.pop().unwrap();
    // Polls renew the lease until renewals stop extending it (8 s max, 4 s TTL); then the
    // next poll past half of what is left mints a new credential with a new version.
    let mut rotated = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let response = mount(&mut client, attrs()).await;
        if versions(&response) != versions(&first) {
            rotated = Some(response);
            break;
        }
        assert_eq!(file(&response, "db-user").0, old_user);
    }
    let rotated = rotated.unwrap_or_else(|| panic!("never rotated: {}", provider.log()));
    let new_user = file(&rotated, "db-user").0;
    assert_ne!(new_user, old_user);
    assert!(
        lookup(&root, &old_lease).await.is_some(),
        "the old lease is replaced before it ends"
    );
    pg.connect_as(&db, &new_user, &file(&rotated, "db-pass").0)
        .await
        .expect("the new credentials log in");
    assert!(provider.log().contains("lease renewed up to its maximum"));
}
