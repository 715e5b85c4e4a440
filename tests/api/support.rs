//! Starting the real `dbwarden` binary and talking to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running `dbwarden` process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// A root token.
    pub token: String,
    /// Everything the process wrote to stderr (logs), filled when it stops.
    pub log_path: PathBuf,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_dbwarden")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts `dbwarden server --dev` on a free port with a random root token.
    pub fn dev() -> Server {
        Server::dev_with_args(&[])
    }

    /// Starts `dbwarden server --dev` with extra arguments (for example `--dev-plugin-dir`).
    pub fn dev_with_args(extra: &[&str]) -> Server {
        let token = format!("root-{}", dbwarden_testkit::unique_name("t"));
        let log_dir = tempfile::tempdir().unwrap().keep();
        let log_path = log_dir.join("server.log");
        let mut child = Command::new(binary())
            .args([
                "server",
                "--dev",
                "--dev-listen-address",
                "127.0.0.1:0",
                "--dev-root-token-id",
                &token,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start dbwarden");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("dbwarden dev server listening on ") {
                addr = Some(rest.trim().to_owned());
            }
            if line.starts_with("Root Token:") {
                break;
            }
        }
        // Keep draining stdout so the server never writes to a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let addr = addr.expect("dev server printed its address");
        Server {
            child,
            addr,
            token,
            log_path,
        }
    }

    /// Starts `dbwarden server --config FILE` and waits until it answers. Its stdout and
    /// stderr are appended to `<config>.log`, so restarts add to one log.
    pub fn with_config(config: &Path, token: &str, listen: &str) -> Server {
        let log_path = config.with_extension("log");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(binary())
            .args(["server", "--config", config.to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dbwarden");
        let server = Server {
            child,
            addr: format!("http://{listen}"),
            token: token.to_owned(),
            log_path,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(listen).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "server with {} did not start: {}",
            config.display(),
            std::fs::read_to_string(&server.log_path).unwrap_or_default()
        );
    }

    /// Kills the process with SIGKILL (no clean-up of any kind) and returns its log.
    pub fn kill9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A client for this server with the root token.
    pub fn client(&self) -> Client {
        dbwarden_testkit::install_crypto_provider();
        Client {
            addr: self.addr.clone(),
            token: Some(self.token.clone()),
            http: reqwest::Client::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config file for a SQLite + key-file server and returns (config path, listen).
pub fn sqlite_config(dir: &Path) -> (PathBuf, String) {
    let storage = format!(
        "backend = \"sqlite\"\npath = \"{}\"",
        dir.join("dbwarden.db").display()
    );
    write_config(dir, "dbwarden.toml", &storage, "")
}

/// Writes a config file with the given `[storage]` body and extra TOML (for example a
/// `[leases]` section), a key-file seal in `dir`, and a free port. Returns (path, listen).
pub fn write_config(dir: &Path, name: &str, storage: &str, extra: &str) -> (PathBuf, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "listen_address = \"{listen}\"\n\n[storage]\n{storage}\n\n[seal]\ntype = \"keyfile\"\npath = \"{}\"\n\n{extra}\n",
            dir.join("seal.key").display()
        ),
    )
    .unwrap();
    (path, listen)
}

/// Runs `operator init` for a config and returns the root token.
pub fn operator_init(config: &Path) -> String {
    let (code, stdout, stderr) = run_cli(&[
        "operator",
        "init",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "operator init: {stderr}");
    let parsed: Value = serde_json::from_str(stdout.trim()).unwrap();
    parsed["root_token"].as_str().unwrap().to_owned()
}

/// Runs `dbwarden` with `args` and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("run dbwarden");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A minimal Vault client.
#[derive(Clone)]
pub struct Client {
    addr: String,
    /// The token sent as `X-Vault-Token`.
    pub token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// The same server with another token.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The same server and token, but connecting from another local address (for example
    /// `127.0.0.2`, which every Linux loopback interface answers), to test CIDR bindings.
    pub fn bound_to(&self, local: std::net::IpAddr) -> Client {
        Client {
            http: reqwest::Client::builder()
                .local_address(local)
                .build()
                .unwrap(),
            ..self.clone()
        }
    }

    /// The same server without any token (logins, and checks that a token is required).
    pub fn anonymous(&self) -> Client {
        Client {
            token: None,
            ..self.clone()
        }
    }

    /// Sends a request; returns the status and the JSON body (`Null` when empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.attempt(method, path, body).await.expect("request")
    }

    /// Sends a request; returns the status and the JSON body, or the transport error (the
    /// server is down, or was killed while answering).
    pub async fn attempt(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr));
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, json))
    }

    /// A client with a new child token holding `policies`.
    pub async fn child(&self, policies: &[&str]) -> Client {
        let created = self
            .ok(
                "POST",
                "auth/token/create",
                Some(serde_json::json!({ "policies": policies })),
            )
            .await;
        self.with_token(created["auth"]["client_token"].as_str().unwrap())
    }

    /// Waits (polling, up to 30 s) until a lease no longer exists; returns whether it went.
    pub async fn wait_lease_gone(&self, lease_id: &str) -> bool {
        for _ in 0..300 {
            let (status, _) = self
                .call(
                    "PUT",
                    "sys/leases/lookup",
                    Some(serde_json::json!({ "lease_id": lease_id })),
                )
                .await;
            if status == 400 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Sends a request without a body; returns the status, or `None` if the server is gone.
    pub async fn try_call(&self, method: &str, path: &str) -> Option<u16> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr));
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        req.send().await.ok().map(|r| r.status().as_u16())
    }

    /// Sends a request that must succeed with 200 or 204.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, json) = self.call(method, path, body).await;
        assert!(
            status == 200 || status == 204,
            "{method} {path}: {status} {json}"
        );
        json
    }
}

/// A TCP proxy in front of a database that a test can cut (dropping every connection and
/// refusing new ones) and restore: the honest way to make a target unreachable.
pub struct Proxy {
    /// The port to connect to instead of the target's.
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// Starts forwarding 127.0.0.1:<port> to 127.0.0.1:<target_port>.
    pub async fn start(target_port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = tokio::sync::watch::channel(false);
        let watch = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if *watch.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = watch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { port, cut }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}
