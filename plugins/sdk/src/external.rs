//! Out-of-process backends: the plugin protocol, the client the server uses, and [`serve`],
//! which turns any [`BackendDescriptor`] into a plugin binary.
//!
//! The protocol is specified in `plugins/sdk/PROTOCOL.md`: newline-delimited JSON over the
//! plugin's standard input (requests) and standard output (handshake, responses); standard
//! error carries free-form log lines. Serving a backend takes one line:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     dbwarden_plugin::external::serve(&my_backend::DESCRIPTOR)
//! }
//! ```
//!
//! The client ([`open`]) starts the process, checks the handshake, sends `initialize`, and
//! returns a [`DatabaseBackend`] whose calls travel over the pipes. The process's I/O is
//! handled by three plain threads (writer, reader, stderr), so the client works in any async
//! runtime and its synchronous [`DatabaseBackend::generate_username`] can wait for an answer
//! without one. When the process dies, every call in flight fails with
//! [`BackendError::Connect`] and [`DatabaseBackend::is_closed`] turns true, so the engine
//! opens a new process at the next use.
//!
//! Secrets: passwords cross the pipe only inside request bodies (`initialize` details,
//! `new_user`, `update_user`). Nothing here logs a request body. Each stderr line of the
//! plugin, and each error message it returns, is redacted of every secret the client has
//! sent it (the admin password and the most recent issued passwords) before it is logged or
//! returned.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::redact;
use crate::{
    BackendDescriptor, BackendError, ChangeExpiration, ChangePassword, DatabaseBackend,
    DeleteUserRequest, NewUserRequest, OpenRequest, UpdateUserRequest, UsernameMetadata,
};

/// The protocol's name, the first field of the handshake.
pub const PROTOCOL: &str = "dbwarden-plugin";

/// The protocol version this SDK speaks (client and plugin side).
pub const PROTOCOL_VERSION: u32 = 1;

/// How long a started plugin may take to write its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a call may wait for its answer (backends have their own, shorter, timeouts).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// How long `generate_username`, which blocks its caller, may wait.
const SYNC_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many recently sent passwords stderr lines are redacted of.
const RECENT_SECRETS: usize = 256;

/// How many stderr lines are kept for error messages.
const STDERR_TAIL: usize = 10;

/// Environment variables passed on to a plugin besides its catalog `env` (the server's own
/// environment may hold secrets, such as a seal passphrase, so it is not inherited).
pub const INHERITED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

// ---------------------------------------------------------------------------------------------
// Wire types

/// The first line a plugin writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Handshake {
    /// Always [`PROTOCOL`].
    pub protocol: String,
    /// The protocol version the plugin speaks.
    pub version: u32,
    /// The plugin's name (its executable's file name).
    pub backend: String,
    /// The `plugin_name`s the plugin's backend serves; the first is its primary one.
    pub plugin_names: Vec<String>,
    /// The plugin's process id.
    pub pid: u32,
    /// The version of the SDK the plugin was built with.
    #[serde(default)]
    pub sdk_version: String,
}

/// A request line: `{"id": 1, "method": "new_user", "params": {...}}`.
#[derive(Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the server, unique among the calls in flight.
    pub id: u64,
    /// The operation.
    pub method: String,
    /// The operation's parameters (an object; `{}` when there are none).
    #[serde(default)]
    pub params: Value,
}

/// A response line: `{"id": 1, "result": {...}}` or `{"id": 1, "error": {...}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

/// A [`BackendError`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireError {
    /// [`BackendError::kind`]: `invalid_config`, `invalid_request`, `connect`, `statement`,
    /// `transient` or `database`.
    pub kind: String,
    /// The message (for `statement`, the server's message only).
    pub message: String,
    /// `statement` only: the 1-based failing statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// `statement` only: the number of statements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
}

impl From<&BackendError> for WireError {
    fn from(err: &BackendError) -> Self {
        let (index, total) = match err {
            BackendError::Statement { index, total, .. } => (Some(*index), Some(*total)),
            _ => (None, None),
        };
        WireError {
            kind: err.kind().to_owned(),
            message: err.message().to_owned(),
            index,
            total,
        }
    }
}

impl From<WireError> for BackendError {
    fn from(err: WireError) -> Self {
        match err.kind.as_str() {
            "invalid_config" => BackendError::InvalidConfig(err.message),
            "invalid_request" => BackendError::InvalidRequest(err.message),
            "connect" => BackendError::Connect(err.message),
            "transient" => BackendError::Transient(err.message),
            "statement" => BackendError::Statement {
                index: err.index.unwrap_or(0),
                total: err.total.unwrap_or(0),
                message: err.message,
            },
            _ => BackendError::Database(err.message),
        }
    }
}

/// `initialize` parameters: an [`OpenRequest`].
#[derive(Serialize, Deserialize)]
pub struct InitializeParams {
    /// The `plugin_name` (one of the handshake's `plugin_names`).
    pub plugin_name: String,
    /// The connection details, admin password included.
    pub details: Map<String, Value>,
    /// Whether to connect once before answering.
    pub verify_connection: bool,
}

/// `initialize` result.
#[derive(Serialize, Deserialize)]
pub struct InitializeResult {
    /// [`DatabaseBackend::type_name`].
    pub type_name: String,
    /// [`DatabaseBackend::default_password_policy`].
    #[serde(default)]
    pub default_password_policy: Option<String>,
}

/// `generate_username` parameters.
#[derive(Serialize, Deserialize)]
pub struct GenerateUsernameParams {
    /// The token's display name.
    pub display_name: String,
    /// The role's name.
    pub role_name: String,
}

/// `generate_username` result.
#[derive(Serialize, Deserialize)]
pub struct GenerateUsernameResult {
    /// The new name.
    pub username: String,
}

/// `new_user` parameters.
#[derive(Serialize, Deserialize)]
pub struct NewUserParams {
    /// The user to create.
    pub username: String,
    /// The password.
    pub password: String,
    /// Creation statements, unrendered.
    pub statements: Vec<String>,
    /// Expiry, RFC 3339.
    pub expiration: DateTime<Utc>,
}

/// A password change inside `update_user`.
#[derive(Serialize, Deserialize)]
pub struct PasswordChange {
    /// The new password.
    pub new_password: String,
    /// Rotation statements (empty: the backend's default).
    #[serde(default)]
    pub statements: Vec<String>,
}

/// An expiry change inside `update_user`.
#[derive(Serialize, Deserialize)]
pub struct ExpirationChange {
    /// The new expiry, RFC 3339.
    pub new_expiration: DateTime<Utc>,
    /// Renew statements (empty: the backend's default).
    #[serde(default)]
    pub statements: Vec<String>,
}

/// `update_user` parameters.
#[derive(Serialize, Deserialize)]
pub struct UpdateUserParams {
    /// The user to change.
    pub username: String,
    /// A password change, if any.
    #[serde(default)]
    pub password: Option<PasswordChange>,
    /// An expiry change, if any.
    #[serde(default)]
    pub expiration: Option<ExpirationChange>,
}

/// `delete_user` parameters.
#[derive(Serialize, Deserialize)]
pub struct DeleteUserParams {
    /// The user to revoke.
    pub username: String,
    /// Revocation statements (empty: the backend's default).
    #[serde(default)]
    pub statements: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Client

/// How to start a plugin process (the engine resolves and checks the catalog entry first).
#[derive(Debug, Clone)]
pub struct PluginCommand {
    /// The catalog name, used in logs and errors.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables (the server's environment is not inherited beyond
    /// [`INHERITED_ENV`]).
    pub env: Vec<(String, String)>,
}

/// Starts a plugin process, checks its handshake and initialises its backend with `request`.
///
/// A `plugin_name` the plugin does not list selects its primary (first) plugin name, so a
/// catalog entry may have any name.
pub async fn open(
    command: PluginCommand,
    request: OpenRequest,
) -> Result<Box<dyn DatabaseBackend>, BackendError> {
    let secrets = detail_secrets(&request.details);
    let (conn, handshake) = Connection::start(&command, secrets).await?;
    initialize(conn, handshake, request).await
}

/// The values of details whose key names a password, secret or token.
fn detail_secrets(details: &Map<String, Value>) -> Vec<String> {
    let mut secrets: Vec<String> = details
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.contains("password") || k.contains("secret") || k.contains("token")
        })
        .filter_map(|(_, v)| v.as_str().map(str::to_owned))
        .filter(|v| !v.is_empty())
        .collect();
    secrets.dedup();
    secrets
}

/// Sends `initialize` over a started connection and wraps it as a backend.
async fn initialize(
    conn: Arc<Connection>,
    handshake: Handshake,
    request: OpenRequest,
) -> Result<Box<dyn DatabaseBackend>, BackendError> {
    let plugin_name = if handshake.plugin_names.contains(&request.plugin_name) {
        request.plugin_name.clone()
    } else {
        handshake.plugin_names[0].clone()
    };
    let params = InitializeParams {
        plugin_name,
        details: request.details,
        verify_connection: request.verify_connection,
    };
    let init = match conn
        .call("initialize", to_value(&params))
        .await
        .and_then(|v| decode_result::<InitializeResult>(&conn.name, "initialize", v))
    {
        Ok(init) => init,
        Err(e) => {
            conn.shutdown().await;
            return Err(e);
        }
    };
    tracing::info!(plugin = %conn.name, pid = conn.pid, backend = %handshake.backend, "external plugin initialised");
    Ok(Box::new(ExternalBackend {
        type_name: intern(init.type_name),
        default_password_policy: init.default_password_policy.map(intern),
        conn,
    }))
}

/// A backend served by a plugin process.
struct ExternalBackend {
    conn: Arc<Connection>,
    type_name: &'static str,
    default_password_policy: Option<&'static str>,
}

/// Keeps one leaked copy of each distinct string, for the trait's `&'static str` answers.
fn intern(s: String) -> &'static str {
    static SEEN: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    if let Some(found) = seen.iter().find(|x| **x == s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.into_boxed_str());
    seen.push(leaked);
    leaked
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("protocol types serialise")
}

/// Decodes the `result` of a successful call as `T`; a result of the wrong shape is a
/// [`BackendError::Database`] naming the plugin and method.
pub fn decode_result<T: for<'de> Deserialize<'de>>(
    plugin: &str,
    method: &str,
    value: Value,
) -> Result<T, BackendError> {
    serde_json::from_value(value).map_err(|e| {
        BackendError::Database(format!(
            "plugin {plugin:?} answered {method} with an invalid result: {e}"
        ))
    })
}

#[async_trait]
impl DatabaseBackend for ExternalBackend {
    fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Blocks the caller for one round trip over the pipe (well under a millisecond).
    fn generate_username(&self, meta: &UsernameMetadata) -> Result<String, BackendError> {
        let params = GenerateUsernameParams {
            display_name: meta.display_name.clone(),
            role_name: meta.role_name.clone(),
        };
        let value = self
            .conn
            .call_blocking("generate_username", to_value(&params))?;
        let result: GenerateUsernameResult =
            decode_result(&self.conn.name, "generate_username", value)?;
        Ok(result.username)
    }

    async fn verify_connection(&self) -> Result<(), BackendError> {
        self.conn
            .call("verify_connection", json!({}))
            .await
            .map(drop)
    }

    async fn new_user(&self, req: NewUserRequest) -> Result<(), BackendError> {
        let password = req.password.expose_secret();
        self.conn.remember_secret(password);
        let params = NewUserParams {
            username: req.username,
            password: password.to_owned(),
            statements: req.statements,
            expiration: req.expiration,
        };
        self.conn
            .call("new_user", to_value(&params))
            .await
            .map(drop)
    }

    async fn update_user(&self, req: UpdateUserRequest) -> Result<(), BackendError> {
        let password = req.password.map(|p| {
            let new_password = p.new_password.expose_secret().to_owned();
            self.conn.remember_secret(&new_password);
            PasswordChange {
                new_password,
                statements: p.statements,
            }
        });
        let params = UpdateUserParams {
            username: req.username,
            password,
            expiration: req.expiration.map(|e| ExpirationChange {
                new_expiration: e.new_expiration,
                statements: e.statements,
            }),
        };
        self.conn
            .call("update_user", to_value(&params))
            .await
            .map(drop)
    }

    async fn delete_user(&self, req: DeleteUserRequest) -> Result<(), BackendError> {
        let params = DeleteUserParams {
            username: req.username,
            statements: req.statements,
        };
        self.conn
            .call("delete_user", to_value(&params))
            .await
            .map(drop)
    }

    async fn close(&self) {
        if !self.conn.is_dead() {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), self.conn.call("close", json!({})))
                    .await;
        }
        self.conn.shutdown().await;
    }

    fn default_password_policy(&self) -> Option<&'static str> {
        self.default_password_policy
    }

    fn is_closed(&self) -> bool {
        self.conn.is_dead()
    }
}

impl Drop for ExternalBackend {
    fn drop(&mut self) {
        self.conn.kill();
    }
}

/// Where an answer goes: an async caller or a blocked thread.
enum Waiter {
    Async(tokio::sync::oneshot::Sender<Result<Value, BackendError>>),
    Blocking(std::sync::mpsc::Sender<Result<Value, BackendError>>),
}

impl Waiter {
    fn send(self, reply: Result<Value, BackendError>) {
        match self {
            Waiter::Async(tx) => {
                let _ = tx.send(reply);
            }
            Waiter::Blocking(tx) => {
                let _ = tx.send(reply);
            }
        }
    }
}

/// Secrets the client has given the plugin, for redacting what comes back.
#[derive(Default)]
struct Secrets {
    admin: Vec<String>,
    recent: VecDeque<String>,
}

impl Secrets {
    fn redact(&self, text: &str) -> String {
        let all: Vec<&str> = self
            .admin
            .iter()
            .chain(self.recent.iter())
            .map(String::as_str)
            .collect();
        redact(text, &all)
    }
}

/// The pipes to one plugin process.
struct Connection {
    name: String,
    pid: u32,
    writer: Mutex<Option<std::sync::mpsc::Sender<String>>>,
    pending: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    /// Set (under the `pending` lock) when the process's output ended.
    dead: AtomicBool,
    /// Set when the server is closing the process on purpose.
    closing: AtomicBool,
    child: Mutex<Option<Child>>,
    secrets: Mutex<Secrets>,
    stderr_tail: Mutex<VecDeque<String>>,
    /// Set when the plugin's stderr ended (the stderr thread read its last line).
    stderr_ended: AtomicBool,
}

impl Connection {
    /// Spawns the process and its I/O threads and waits for the handshake.
    async fn start(
        command: &PluginCommand,
        admin_secrets: Vec<String>,
    ) -> Result<(Arc<Connection>, Handshake), BackendError> {
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in INHERITED_ENV {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        for (key, value) in &command.env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().map_err(|e| {
            BackendError::Connect(format!(
                "cannot start plugin {:?} ({}): {e}",
                command.name,
                command.program.display()
            ))
        })?;
        let pid = child.id();
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        tracing::info!(plugin = %command.name, pid, program = %command.program.display(), "started external plugin");
        Self::attach(
            &command.name,
            pid,
            Some(child),
            (stdin, stdout, stderr),
            admin_secrets,
        )
        .await
    }

    /// Starts the I/O threads over a plugin's three streams and waits for the handshake.
    async fn attach<I, O, E>(
        name: &str,
        pid: u32,
        child: Option<Child>,
        (stdin, stdout, stderr): (I, O, E),
        admin_secrets: Vec<String>,
    ) -> Result<(Arc<Connection>, Handshake), BackendError>
    where
        I: Write + Send + 'static,
        O: Read + Send + 'static,
        E: Read + Send + 'static,
    {
        let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
        let conn = Arc::new(Connection {
            name: name.to_owned(),
            pid,
            writer: Mutex::new(Some(line_tx)),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            dead: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            child: Mutex::new(child),
            secrets: Mutex::new(Secrets {
                admin: admin_secrets,
                recent: VecDeque::new(),
            }),
            stderr_tail: Mutex::new(VecDeque::new()),
            stderr_ended: AtomicBool::new(false),
        });
        let thread_error =
            |e: std::io::Error| BackendError::Connect(format!("cannot start a plugin thread: {e}"));
        std::thread::Builder::new()
            .name(format!("plugin-{pid}-in"))
            .spawn(move || write_lines(stdin, line_rx))
            .map_err(thread_error)?;
        let for_stderr = conn.clone();
        std::thread::Builder::new()
            .name(format!("plugin-{pid}-err"))
            .spawn(move || for_stderr.forward_stderr(stderr))
            .map_err(thread_error)?;
        let (hs_tx, hs_rx) = tokio::sync::oneshot::channel();
        let for_stdout = conn.clone();
        std::thread::Builder::new()
            .name(format!("plugin-{pid}-out"))
            .spawn(move || for_stdout.read_responses(stdout, hs_tx))
            .map_err(thread_error)?;

        let outcome = match tokio::time::timeout(HANDSHAKE_TIMEOUT, hs_rx).await {
            Ok(Ok(checked)) => checked,
            Ok(Err(_)) => Err("its output ended before the handshake".to_owned()),
            Err(_) => Err(format!(
                "no handshake within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )),
        };
        match outcome {
            Ok(handshake) => {
                tracing::info!(plugin = name, pid, reported_pid = handshake.pid, backend = %handshake.backend, version = handshake.version, "external plugin handshake");
                Ok((conn, handshake))
            }
            Err(problem) => {
                conn.kill();
                // Let the stderr thread catch the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(BackendError::Connect(format!(
                    "plugin {name:?} did not start the {PROTOCOL} protocol: {problem}{}",
                    conn.stderr_summary()
                )))
            }
        }
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    fn remember_secret(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut secrets = self.secrets.lock().expect("not poisoned");
        if secrets.recent.len() >= RECENT_SECRETS {
            secrets.recent.pop_front();
        }
        secrets.recent.push_back(secret.to_owned());
    }

    fn redact(&self, text: &str) -> String {
        self.secrets.lock().expect("not poisoned").redact(text)
    }

    fn exited_error(&self) -> BackendError {
        if self.closing.load(Ordering::Acquire) {
            return BackendError::Connect(format!(
                "plugin {:?} (pid {}) has been closed",
                self.name, self.pid
            ));
        }
        BackendError::Connect(format!(
            "plugin {:?} (pid {}) exited; it is restarted at the next use{}",
            self.name,
            self.pid,
            self.stderr_summary()
        ))
    }

    /// `; last stderr lines: ...` (already redacted), or nothing.
    fn stderr_summary(&self) -> String {
        let tail = self.stderr_tail.lock().expect("not poisoned");
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; last stderr lines: {}",
                tail.iter().cloned().collect::<Vec<_>>().join(" | ")
            )
        }
    }

    /// Registers a waiter and writes the request; `None` if the process is gone.
    fn send(&self, method: &str, params: Value, waiter: Waiter) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = serde_json::to_string(&Request {
            id,
            method: method.to_owned(),
            params,
        })
        .expect("protocol types serialise");
        {
            let mut pending = self.pending.lock().expect("not poisoned");
            if self.is_dead() {
                return None;
            }
            pending.insert(id, waiter);
        }
        let sent = self
            .writer
            .lock()
            .expect("not poisoned")
            .as_ref()
            .is_some_and(|w| w.send(line).is_ok());
        if !sent {
            self.pending.lock().expect("not poisoned").remove(&id);
            return None;
        }
        Some(id)
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, BackendError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let Some(id) = self.send(method, params, Waiter::Async(tx)) else {
            return Err(self.exited_error());
        };
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(self.exited_error()),
            Err(_) => {
                self.pending.lock().expect("not poisoned").remove(&id);
                Err(BackendError::Connect(format!(
                    "plugin {:?} did not answer {method} within {} s",
                    self.name,
                    CALL_TIMEOUT.as_secs()
                )))
            }
        }
    }

    fn call_blocking(&self, method: &str, params: Value) -> Result<Value, BackendError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let Some(id) = self.send(method, params, Waiter::Blocking(tx)) else {
            return Err(self.exited_error());
        };
        match rx.recv_timeout(SYNC_CALL_TIMEOUT) {
            Ok(reply) => reply,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(self.exited_error()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.pending.lock().expect("not poisoned").remove(&id);
                Err(BackendError::Connect(format!(
                    "plugin {:?} did not answer {method} within {} s",
                    self.name,
                    SYNC_CALL_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Reader thread: the handshake, then responses until the output ends.
    fn read_responses(
        self: Arc<Self>,
        stdout: impl Read,
        handshake: tokio::sync::oneshot::Sender<Result<Handshake, String>>,
    ) {
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(line)) => decode_handshake(&self.name, &line),
            Some(Err(e)) => Err(format!("reading its output failed: {e}")),
            None => Err("it exited before the handshake".to_owned()),
        };
        let started = first.is_ok();
        let _ = handshake.send(first);
        if started {
            for line in lines {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                match decode_response(&line, |m| self.redact(m)) {
                    Ok((id, reply)) => self.deliver(id, reply),
                    Err(e) => {
                        tracing::warn!(plugin = %self.name, pid = self.pid, error = %e, "the plugin wrote a line that is not a response; ignored")
                    }
                }
            }
        }
        // A crashing plugin's last words are on stderr, read by another thread: wait for
        // them (briefly: a child may keep stderr open) so the error that callers get has them.
        for _ in 0..50 {
            if self.stderr_ended.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.mark_dead();
        self.reap();
    }

    fn deliver(&self, id: u64, reply: Result<Value, BackendError>) {
        let Some(waiter) = self.pending.lock().expect("not poisoned").remove(&id) else {
            tracing::debug!(plugin = %self.name, id, "a response for no call in flight (timed out?)");
            return;
        };
        waiter.send(reply);
    }

    /// Fails every call in flight and refuses new ones.
    fn mark_dead(&self) {
        let drained: Vec<Waiter> = {
            let mut pending = self.pending.lock().expect("not poisoned");
            self.dead.store(true, Ordering::Release);
            pending.drain().map(|(_, w)| w).collect()
        };
        for waiter in drained {
            waiter.send(Err(self.exited_error()));
        }
        self.writer.lock().expect("not poisoned").take();
    }

    /// Waits for the process (which closed its output) to exit, killing it after 2 s.
    fn reap(&self) {
        let Some(mut child) = self.child.lock().expect("not poisoned").take() else {
            return;
        };
        let mut status = None;
        for _ in 0..40 {
            match child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => break,
            }
        }
        let status = match status {
            Some(s) => s.to_string(),
            None => {
                let _ = child.kill();
                match child.wait() {
                    Ok(s) => format!("{s} (killed: it closed its output but kept running)"),
                    Err(e) => format!("unknown ({e})"),
                }
            }
        };
        if self.closing.load(Ordering::Acquire) {
            tracing::debug!(plugin = %self.name, pid = self.pid, %status, "external plugin stopped");
        } else {
            tracing::warn!(plugin = %self.name, pid = self.pid, %status, "external plugin exited unexpectedly; it is restarted at the next use");
        }
    }

    /// Stderr thread: every line to the log, redacted; the last few kept for errors.
    fn forward_stderr(self: Arc<Self>, stderr: impl Read) {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let line = self.redact(line.trim_end());
            if line.is_empty() {
                continue;
            }
            {
                let mut tail = self.stderr_tail.lock().expect("not poisoned");
                if tail.len() >= STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
            }
            // SDK plugins log `LEVEL target: message`; other plugins, whatever they like.
            let head: String = line.chars().take(48).collect();
            if head.contains("ERROR") || head.contains("WARN") {
                tracing::warn!(target: "dbwarden::plugin", plugin = %self.name, pid = self.pid, "{line}");
            } else {
                tracing::info!(target: "dbwarden::plugin", plugin = %self.name, pid = self.pid, "{line}");
            }
        }
        self.stderr_ended.store(true, Ordering::Release);
    }

    /// Closes stdin (the plugin exits when it sees the end) and waits up to 5 s, then kills.
    async fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        self.writer.lock().expect("not poisoned").take();
        for _ in 0..100 {
            let exited = match self.child.lock().expect("not poisoned").as_mut() {
                None => true,
                Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            };
            if exited {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// Kills the process at once (if it still runs) and reaps it.
    fn kill(&self) {
        self.closing.store(true, Ordering::Release);
        self.writer.lock().expect("not poisoned").take();
        if let Some(mut child) = self.child.lock().expect("not poisoned").take()
            && !matches!(child.try_wait(), Ok(Some(_)))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn redact_error(err: &mut BackendError, redact: impl Fn(&str) -> String) {
    let message = err.message_mut();
    *message = redact(message);
}

/// Decodes and checks the first line of a plugin's output, the handshake of plugin `name`;
/// `Err` says what is wrong with it.
pub fn decode_handshake(name: &str, line: &str) -> Result<Handshake, String> {
    let hs = serde_json::from_str::<Handshake>(line)
        .map_err(|_| "its first output line is not a handshake".to_owned())?;
    check_handshake(name, hs)
}

/// Decodes a response line of a plugin: the call's id and its outcome, with an error's
/// message passed through `redact` (which removes the secrets the plugin was sent).
pub fn decode_response(
    line: &str,
    redact: impl Fn(&str) -> String,
) -> Result<(u64, Result<Value, BackendError>), serde_json::Error> {
    let resp = serde_json::from_str::<Response>(line)?;
    let reply = match (resp.result, resp.error) {
        (_, Some(err)) => {
            let mut err = BackendError::from(err);
            redact_error(&mut err, redact);
            Err(err)
        }
        (Some(result), None) => Ok(result),
        (None, None) => Ok(Value::Null),
    };
    Ok((resp.id, reply))
}

fn check_handshake(name: &str, hs: Handshake) -> Result<Handshake, String> {
    if hs.protocol != PROTOCOL {
        return Err(format!("its handshake names protocol {:?}", hs.protocol));
    }
    if hs.version != PROTOCOL_VERSION {
        return Err(format!(
            "it speaks protocol version {}, this server speaks version {PROTOCOL_VERSION}; \
             rebuild {name:?} with a matching dbwarden-plugin SDK",
            hs.version
        ));
    }
    if hs.plugin_names.is_empty() {
        return Err("its handshake lists no plugin_names".into());
    }
    Ok(hs)
}

/// Writer thread: one line per request, flushed, until the channel closes.
fn write_lines(mut out: impl Write, lines: std::sync::mpsc::Receiver<String>) {
    for line in lines {
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin side

/// Serves `descriptor` over standard input and output: the whole `main` of a plugin binary.
///
/// Logs go to standard error (`DBWARDEN_PLUGIN_LOG` sets the filter; default `info`). Returns
/// when standard input ends (the server closed it or died), after calls in flight finish.
pub fn serve(descriptor: &'static BackendDescriptor) -> ExitCode {
    serve_with_log_filter(descriptor, "info")
}

/// [`serve`] with another default log filter (used when `DBWARDEN_PLUGIN_LOG` is unset), for
/// plugins whose libraries are noisy.
pub fn serve_with_log_filter(
    descriptor: &'static BackendDescriptor,
    default_filter: &str,
) -> ExitCode {
    // No timestamps: the server stamps each line when it copies it into its own log.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DBWARDEN_PLUGIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the plugin's runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let name = std::env::args()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "plugin".to_owned());
    let result = runtime.block_on(serve_io(
        descriptor,
        &name,
        BufReader::new(std::io::stdin()),
        std::io::stdout(),
    ));
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugin I/O failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The plugin side of the protocol over any pair of streams (what [`serve`] runs on
/// stdin/stdout; tests run it on pipes).
pub async fn serve_io<R, W>(
    descriptor: &'static BackendDescriptor,
    name: &str,
    input: R,
    output: W,
) -> std::io::Result<()>
where
    R: BufRead + Send + 'static,
    W: Write + Send + 'static,
{
    let (out_tx, out_rx) = std::sync::mpsc::channel::<String>();
    let writer = std::thread::Builder::new()
        .name("plugin-stdout".into())
        .spawn(move || write_lines(output, out_rx))?;
    let handshake = Handshake {
        protocol: PROTOCOL.into(),
        version: PROTOCOL_VERSION,
        backend: name.to_owned(),
        plugin_names: descriptor
            .plugin_names
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        pid: std::process::id(),
        sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let _ = out_tx.send(serde_json::to_string(&handshake).expect("handshake serialises"));
    tracing::info!(backend = name, plugin_names = ?descriptor.plugin_names, "dbwarden plugin serving protocol version {PROTOCOL_VERSION}");

    let (in_tx, mut in_rx) = tokio::sync::mpsc::unbounded_channel::<std::io::Result<String>>();
    std::thread::Builder::new()
        .name("plugin-stdin".into())
        .spawn(move || {
            for line in input.lines() {
                let stop = line.is_err();
                if in_tx.send(line).is_err() || stop {
                    break;
                }
            }
        })?;

    let state = Arc::new(PluginState {
        descriptor,
        backend: Mutex::new(None),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut read_error = None;
    while let Some(line) = in_rx.recv().await {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a line that is not a request");
                continue;
            }
        };
        let state = state.clone();
        let out = out_tx.clone();
        tasks.spawn(async move {
            let id = request.id;
            let method = request.method.clone();
            let inner = tokio::spawn(async move { state.handle(request).await });
            let response = match inner.await {
                Ok(response) => response,
                Err(_) => Response {
                    id,
                    result: None,
                    error: Some(WireError::from(&BackendError::Database(format!(
                        "the plugin panicked while serving {method}"
                    )))),
                },
            };
            let _ = out.send(serde_json::to_string(&response).expect("responses serialise"));
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    // Input ended: finish the calls in flight, close the backend, flush.
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let backend = state.backend.lock().expect("not poisoned").take();
    if let Some(backend) = backend {
        backend.close().await;
    }
    drop(out_tx);
    let _ = writer.join();
    tracing::info!("standard input closed; plugin exiting");
    match read_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct PluginState {
    descriptor: &'static BackendDescriptor,
    backend: Mutex<Option<Arc<dyn DatabaseBackend>>>,
}

/// Decodes the `params` of a request for `method` as `T` (`null` counts as `{}`); bad
/// parameters are a [`BackendError::InvalidRequest`].
pub fn decode_params<T: for<'de> Deserialize<'de>>(
    method: &str,
    value: Value,
) -> Result<T, BackendError> {
    let value = if value.is_null() { json!({}) } else { value };
    serde_json::from_value(value)
        .map_err(|e| BackendError::InvalidRequest(format!("invalid parameters for {method}: {e}")))
}

impl PluginState {
    fn backend(&self) -> Result<Arc<dyn DatabaseBackend>, BackendError> {
        self.backend
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| {
                BackendError::InvalidRequest("the plugin has not been initialised".into())
            })
    }

    async fn handle(&self, request: Request) -> Response {
        let id = request.id;
        match self.dispatch(&request.method, request.params).await {
            Ok(result) => Response {
                id,
                result: Some(result),
                error: None,
            },
            Err(err) => Response {
                id,
                result: None,
                error: Some(WireError::from(&err)),
            },
        }
    }

    async fn dispatch(&self, method: &str, raw: Value) -> Result<Value, BackendError> {
        match method {
            "initialize" => {
                let p: InitializeParams = decode_params(method, raw)?;
                if self.backend.lock().expect("not poisoned").is_some() {
                    return Err(BackendError::InvalidRequest(
                        "the plugin is initialised already".into(),
                    ));
                }
                let backend: Arc<dyn DatabaseBackend> = Arc::from(
                    (self.descriptor.open)(OpenRequest {
                        plugin_name: p.plugin_name,
                        details: p.details,
                        verify_connection: p.verify_connection,
                    })
                    .await?,
                );
                let result = InitializeResult {
                    type_name: backend.type_name().to_owned(),
                    default_password_policy: backend.default_password_policy().map(str::to_owned),
                };
                *self.backend.lock().expect("not poisoned") = Some(backend);
                Ok(to_value(&result))
            }
            "generate_username" => {
                let p: GenerateUsernameParams = decode_params(method, raw)?;
                let username = self.backend()?.generate_username(&UsernameMetadata {
                    display_name: p.display_name,
                    role_name: p.role_name,
                })?;
                Ok(to_value(&GenerateUsernameResult { username }))
            }
            "verify_connection" => {
                self.backend()?.verify_connection().await?;
                Ok(json!({}))
            }
            "new_user" => {
                let p: NewUserParams = decode_params(method, raw)?;
                self.backend()?
                    .new_user(NewUserRequest {
                        username: p.username,
                        password: SecretString::from(p.password),
                        statements: p.statements,
                        expiration: p.expiration,
                    })
                    .await?;
                Ok(json!({}))
            }
            "update_user" => {
                let p: UpdateUserParams = decode_params(method, raw)?;
                self.backend()?
                    .update_user(UpdateUserRequest {
                        username: p.username,
                        password: p.password.map(|c| ChangePassword {
                            new_password: SecretString::from(c.new_password),
                            statements: c.statements,
                        }),
                        expiration: p.expiration.map(|c| ChangeExpiration {
                            new_expiration: c.new_expiration,
                            statements: c.statements,
                        }),
                    })
                    .await?;
                Ok(json!({}))
            }
            "delete_user" => {
                let p: DeleteUserParams = decode_params(method, raw)?;
                self.backend()?
                    .delete_user(DeleteUserRequest {
                        username: p.username,
                        statements: p.statements,
                    })
                    .await?;
                Ok(json!({}))
            }
            "close" => {
                let backend = self.backend.lock().expect("not poisoned").take();
                if let Some(backend) = backend {
                    backend.close().await;
                }
                Ok(json!({}))
            }
            other => Err(BackendError::InvalidRequest(format!(
                "unknown method {other:?} (protocol version {PROTOCOL_VERSION})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip() {
        for err in [
            BackendError::InvalidConfig("a".into()),
            BackendError::InvalidRequest("b".into()),
            BackendError::Connect("c".into()),
            BackendError::Transient("d".into()),
            BackendError::Database("e".into()),
            BackendError::Statement {
                index: 2,
                total: 3,
                message: "f".into(),
            },
        ] {
            let wire = WireError::from(&err);
            let line = serde_json::to_string(&wire).unwrap();
            let back = BackendError::from(serde_json::from_str::<WireError>(&line).unwrap());
            assert_eq!(back.to_string(), err.to_string());
            assert_eq!(back.kind(), err.kind());
        }
        let unknown = WireError {
            kind: "from_the_future".into(),
            message: "x".into(),
            index: None,
            total: None,
        };
        assert_eq!(BackendError::from(unknown).kind(), "database");
    }

    #[test]
    fn wire_shapes_are_stable() {
        let req = Request {
            id: 7,
            method: "delete_user".into(),
            params: to_value(&DeleteUserParams {
                username: "u".into(),
                statements: vec![],
            }),
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"id":7,"method":"delete_user","params":{"statements":[],"username":"u"}}"#
        );
        let resp: Response = serde_json::from_str(
            r#"{"id":7,"error":{"kind":"statement","message":"m","index":1,"total":2}}"#,
        )
        .unwrap();
        assert!(resp.result.is_none());
        assert_eq!(resp.error.unwrap().index, Some(1));
        let p: NewUserParams = serde_json::from_value(json!({
            "username": "u", "password": "p", "statements": ["s"],
            "expiration": "2030-01-02T03:04:05Z"
        }))
        .unwrap();
        assert_eq!(p.expiration.timestamp(), 1_893_553_445);
    }

    #[test]
    fn handshake_checks() {
        let good = Handshake {
            protocol: PROTOCOL.into(),
            version: PROTOCOL_VERSION,
            backend: "b".into(),
            plugin_names: vec!["x".into()],
            pid: 1,
            sdk_version: String::new(),
        };
        assert!(check_handshake("n", good.clone()).is_ok());
        let mut v2 = good.clone();
        v2.version = 2;
        assert!(check_handshake("n", v2).unwrap_err().contains("version 2"));
        let mut other = good.clone();
        other.protocol = "grpc".into();
        assert!(check_handshake("n", other).is_err());
        let mut none = good;
        none.plugin_names.clear();
        assert!(check_handshake("n", none).is_err());
    }

    /// A backend that keeps users in memory; statements equal to `FAIL` fail, echoing the
    /// password as some servers do.
    struct Fake {
        users: Mutex<std::collections::HashSet<String>>,
    }

    #[async_trait]
    impl DatabaseBackend for Fake {
        fn type_name(&self) -> &'static str {
            "fake"
        }
        fn generate_username(&self, meta: &UsernameMetadata) -> Result<String, BackendError> {
            Ok(format!("u-{}", meta.role_name))
        }
        async fn verify_connection(&self) -> Result<(), BackendError> {
            Ok(())
        }
        async fn new_user(&self, req: NewUserRequest) -> Result<(), BackendError> {
            if req.statements.iter().any(|s| s == "FAIL") {
                return Err(BackendError::Statement {
                    index: 1,
                    total: req.statements.len(),
                    message: format!("syntax error near '{}'", req.password.expose_secret()),
                });
            }
            self.users.lock().unwrap().insert(req.username);
            Ok(())
        }
        async fn update_user(&self, _req: UpdateUserRequest) -> Result<(), BackendError> {
            Ok(())
        }
        async fn delete_user(&self, req: DeleteUserRequest) -> Result<(), BackendError> {
            self.users.lock().unwrap().remove(&req.username);
            Ok(())
        }
        async fn close(&self) {}
        fn default_password_policy(&self) -> Option<&'static str> {
            Some("length = 9")
        }
    }

    static FAKE: BackendDescriptor = BackendDescriptor {
        plugin_names: &["fake-database-plugin", "fake-2-database-plugin"],
        open: |req| {
            Box::pin(async move {
                if req.details.get("password").and_then(Value::as_str) != Some("Adm1n-Secret") {
                    return Err(BackendError::Connect(
                        "password authentication failed".into(),
                    ));
                }
                assert_eq!(req.plugin_name, "fake-database-plugin");
                Ok(Box::new(Fake {
                    users: Mutex::new(Default::default()),
                }) as Box<dyn DatabaseBackend>)
            })
        },
    };

    /// A writer the test can break, as a crashing plugin's stdout would.
    #[derive(Clone)]
    struct Breakable(Arc<Mutex<Option<std::io::PipeWriter>>>);

    impl Write for Breakable {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self.0.lock().unwrap().as_mut() {
                Some(w) => w.write(buf),
                None => Err(std::io::ErrorKind::BrokenPipe.into()),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            match self.0.lock().unwrap().as_mut() {
                Some(w) => w.flush(),
                None => Err(std::io::ErrorKind::BrokenPipe.into()),
            }
        }
    }

    #[tokio::test]
    async fn client_and_server_over_pipes() {
        let (req_r, req_w) = std::io::pipe().unwrap();
        let (resp_r, resp_w) = std::io::pipe().unwrap();
        let (err_r, mut err_w) = std::io::pipe().unwrap();
        let out = Breakable(Arc::new(Mutex::new(Some(resp_w))));
        let plugin_out = out.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(serve_io(
                &FAKE,
                "fake-plugin",
                BufReader::new(req_r),
                plugin_out,
            ));
        });
        let (conn, hs) = Connection::attach(
            "catalog-name",
            0,
            None,
            (req_w, resp_r, err_r),
            vec!["Adm1n-Secret".into()],
        )
        .await
        .unwrap();
        assert_eq!(hs.backend, "fake-plugin");
        assert_eq!(hs.version, PROTOCOL_VERSION);

        let mut details = Map::new();
        details.insert("password".into(), Value::from("Adm1n-Secret"));
        let backend = initialize(
            conn,
            hs,
            OpenRequest {
                plugin_name: "catalog-name".into(),
                details,
                verify_connection: true,
            },
        )
        .await
        .unwrap();
        assert_eq!(backend.type_name(), "fake");
        assert_eq!(backend.default_password_policy(), Some("length = 9"));
        let meta = UsernameMetadata {
            display_name: "d".into(),
            role_name: "r".into(),
        };
        assert_eq!(backend.generate_username(&meta).unwrap(), "u-r");
        backend.verify_connection().await.unwrap();
        let request = |statements: &[&str]| NewUserRequest {
            username: "u-r".into(),
            password: SecretString::from("Issued-Pw-9".to_owned()),
            statements: statements.iter().map(|s| s.to_string()).collect(),
            expiration: Utc::now(),
        };
        backend.new_user(request(&["CREATE"])).await.unwrap();
        let err = backend.new_user(request(&["FAIL", "x"])).await.unwrap_err();
        assert!(
            matches!(&err, BackendError::Statement { index: 1, total: 2, message } if message == "syntax error near '[redacted]'"),
            "{err:?}"
        );
        backend
            .delete_user(DeleteUserRequest {
                username: "u-r".into(),
                statements: vec![],
            })
            .await
            .unwrap();
        // Calls in parallel are matched to their answers by id.
        let backend: Arc<dyn DatabaseBackend> = Arc::from(backend);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            let b = backend.clone();
            set.spawn(async move {
                b.delete_user(DeleteUserRequest {
                    username: format!("u-{i}"),
                    statements: vec![],
                })
                .await
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }

        // The plugin crashes: its output ends after a last word on stderr.
        writeln!(err_w, "panicked: cannot log in with Adm1n-Secret").unwrap();
        drop(err_w);
        out.0.lock().unwrap().take();
        for _ in 0..100 {
            if backend.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(backend.is_closed());
        let err = backend.verify_connection().await.unwrap_err();
        assert!(matches!(err, BackendError::Connect(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("exited"), "{text}");
        assert!(text.contains("cannot log in with [redacted]"), "{text}");
        assert!(!text.contains("Adm1n-Secret"), "{text}");
        assert!(matches!(
            backend.generate_username(&meta),
            Err(BackendError::Connect(_))
        ));
    }

    #[test]
    fn secrets_are_redacted_from_plugin_output() {
        let mut s = Secrets {
            admin: vec!["Adm1n-Pw".into()],
            recent: VecDeque::new(),
        };
        s.recent.push_back("Issued-Pw-1".into());
        assert_eq!(
            s.redact("login Adm1n-Pw failed; new Issued-Pw-1"),
            "login [redacted] failed; new [redacted]"
        );
        let mut err = BackendError::Statement {
            index: 1,
            total: 1,
            message: "near 'Issued-Pw-1'".into(),
        };
        redact_error(&mut err, |m| s.redact(m));
        assert!(!err.to_string().contains("Issued-Pw-1"));
    }
}
