//! Audit devices: one JSON line per request and per response, secrets HMAC'd, lines chained.
//!
//! Devices (`sys/audit/:path`): `file` (reopened on SIGHUP for log rotation), `stdout`, and
//! `socket` (TCP). Each device has its own random salt: every string in request and response
//! data, the client token and accessors are written as `hmac-sha256:<hex>` under it
//! (RFC 3339 timestamps and configured non-HMAC keys excepted), so an auditor can match a
//! known value (`sys/audit-hash/:path`) without the log revealing any secret. Each line
//! carries `seq` and the hash of the previous line ([`chain`]). If at least one device is
//! enabled and none can record a request, the request fails before it is executed.

pub mod chain;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

const AUDIT_KEY: &str = "core/audit";

/// How a device writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Append to a file.
    File,
    /// Write to standard output.
    Stdout,
    /// Send to a TCP socket.
    Socket,
}

/// A device's stored configuration. The salt is sealed in storage like every entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// The mount path (`file/`, `audit-1/`), without slashes.
    pub path: String,
    /// The kind.
    #[serde(rename = "type")]
    pub kind: DeviceKind,
    /// Free text.
    pub description: String,
    /// `file_path` for files; `address` for sockets; `hmac_accessor`, `log_raw`,
    /// `non_hmac_request_keys`, `non_hmac_response_keys` as in Vault.
    pub options: Map<String, Value>,
    /// The HMAC key (hex).
    pub salt: String,
}

impl DeviceConfig {
    fn option_str(&self, key: &str) -> Option<&str> {
        self.options.get(key).and_then(Value::as_str)
    }

    fn option_bool(&self, key: &str, default: bool) -> bool {
        match self.options.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => default,
        }
    }

    fn option_list(&self, key: &str) -> Vec<String> {
        match self.options.get(key) {
            Some(Value::String(s)) => s
                .split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `hmac-sha256:<hex>` of a value under this device's salt.
    pub fn hash(&self, value: &str) -> String {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(self.salt.as_bytes()).expect("any key length");
        mac.update(value.as_bytes());
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

enum Sink {
    File {
        path: PathBuf,
        file: std::fs::File,
    },
    Stdout,
    Socket {
        address: String,
        stream: Option<std::net::TcpStream>,
    },
}

struct Device {
    config: DeviceConfig,
    sink: Sink,
    seq: u64,
    prev_hash: String,
}

impl Device {
    fn open(config: DeviceConfig) -> Result<Device> {
        let (sink, seq, prev_hash) = match config.kind {
            DeviceKind::File => {
                let path = PathBuf::from(
                    config
                        .option_str("file_path")
                        .ok_or_else(|| invalid("file audit devices need options.file_path"))?,
                );
                let file = open_append(&path)?;
                let (seq, prev) = last_entry(&path);
                (Sink::File { path, file }, seq, prev)
            }
            DeviceKind::Stdout => (Sink::Stdout, 0, chain::GENESIS.to_owned()),
            DeviceKind::Socket => {
                let address = config
                    .option_str("address")
                    .ok_or_else(|| invalid("socket audit devices need options.address"))?
                    .to_owned();
                let stream = std::net::TcpStream::connect(&address).map_err(|e| {
                    invalid(format!("cannot connect the audit socket {address}: {e}"))
                })?;
                (
                    Sink::Socket {
                        address,
                        stream: Some(stream),
                    },
                    0,
                    chain::GENESIS.to_owned(),
                )
            }
        };
        Ok(Device {
            config,
            sink,
            seq,
            prev_hash,
        })
    }

    fn write(&mut self, mut entry: Map<String, Value>) -> std::io::Result<()> {
        let seq = self.seq + 1;
        entry.insert("seq".into(), json!(seq));
        entry.insert("prev_hash".into(), json!(self.prev_hash));
        let line = Value::Object(entry).to_string();
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        match &mut self.sink {
            Sink::File { file, .. } => {
                file.write_all(&bytes)?;
                file.flush()?;
            }
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)?;
                out.flush()?;
            }
            Sink::Socket { address, stream } => {
                if stream.is_none() {
                    *stream = Some(std::net::TcpStream::connect(address.as_str())?);
                }
                let sent = stream.as_mut().map(|s| s.write_all(&bytes));
                if let Some(Err(e)) = sent {
                    *stream = None;
                    return Err(e);
                }
            }
        }
        // Only a written line advances the chain.
        self.seq = seq;
        self.prev_hash = chain::line_hash(&line);
        Ok(())
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        if let Sink::File { path, file } = &mut self.sink {
            *file = open_append(path).map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

fn open_append(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| invalid(format!("cannot open audit file {}: {e}", path.display())))
}

/// The `seq` and hash of the last line of an existing file, so the chain continues.
fn last_entry(path: &std::path::Path) -> (u64, String) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return (0, chain::GENESIS.to_owned());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(1 << 20);
    let _ = file.seek(SeekFrom::Start(start));
    let mut raw = Vec::new();
    let _ = file.read_to_end(&mut raw);
    // The window may start inside a line (or a character); only the last line matters.
    let tail = String::from_utf8_lossy(&raw);
    let last = BufReader::new(tail.as_bytes())
        .lines()
        .map_while(std::result::Result::ok)
        .filter(|l| !l.trim().is_empty())
        .last();
    match last {
        Some(line) => {
            let seq = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|v| v["seq"].as_u64())
                .unwrap_or(0);
            (seq, chain::line_hash(&line))
        }
        None => (0, chain::GENESIS.to_owned()),
    }
}

/// The enabled audit devices of this process.
#[derive(Default)]
pub struct Broker {
    devices: Mutex<Vec<Device>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

/// What is known about a request when it is audited.
#[derive(Debug, Default, Clone)]
pub struct RequestInfo {
    /// The request id (also in the response).
    pub id: String,
    /// `read`, `list`, `create`, `update`, `delete`.
    pub operation: String,
    /// The path below `/v1/`.
    pub path: String,
    /// Request data.
    pub data: Map<String, Value>,
    /// Client address.
    pub remote_address: String,
    /// The token as sent (hashed before writing).
    pub client_token: Option<String>,
    /// Its accessor.
    pub accessor: Option<String>,
    /// Its display name.
    pub display_name: String,
    /// Its policies.
    pub policies: Vec<String>,
    /// Policies that allowed the request.
    pub granting_policies: Vec<String>,
    /// Whether it was allowed.
    pub allowed: bool,
}

/// What a response looked like, for its audit entry.
#[derive(Debug, Default, Clone)]
pub struct ResponseInfo {
    /// Response data.
    pub data: Option<Map<String, Value>>,
    /// Auth block.
    pub auth: Option<Value>,
    /// Lease id, if any (not hashed, as in Vault).
    pub lease_id: Option<String>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// The error, if the request failed.
    pub error: Option<String>,
}

fn is_timestamp(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// Replaces every string (recursively) by its HMAC, except timestamps and `skip` keys.
fn hash_value(device: &DeviceConfig, value: &Value, skip: &[String]) -> Value {
    match value {
        Value::String(s) if is_timestamp(s) => value.clone(),
        Value::String(s) => Value::String(device.hash(s)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| hash_value(device, v, skip)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if skip.contains(k) {
                        v.clone()
                    } else {
                        hash_value(device, v, skip)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn auth_block(device: &DeviceConfig, req: &RequestInfo, raw: bool) -> Value {
    let hash = |s: &Option<String>| -> Value {
        match s {
            Some(s) if raw => json!(s),
            Some(s) => json!(device.hash(s)),
            None => Value::Null,
        }
    };
    let accessor = if device.option_bool("hmac_accessor", true) {
        hash(&req.accessor)
    } else {
        json!(req.accessor)
    };
    json!({
        "client_token": hash(&req.client_token),
        "accessor": accessor,
        "display_name": req.display_name,
        "policies": req.policies,
        "token_policies": req.policies,
        "policy_results": { "allowed": req.allowed, "granting_policies": req.granting_policies },
        "token_type": "service",
    })
}

fn request_block(device: &DeviceConfig, req: &RequestInfo, raw: bool) -> Value {
    let skip = device.option_list("non_hmac_request_keys");
    let data = if raw {
        Value::Object(req.data.clone())
    } else {
        hash_value(device, &Value::Object(req.data.clone()), &skip)
    };
    json!({
        "id": req.id,
        "operation": req.operation,
        "path": req.path,
        "data": if req.data.is_empty() { Value::Null } else { data },
        "remote_address": req.remote_address,
        "client_token": auth_block(device, req, raw)["client_token"],
    })
}

impl Broker {
    /// Opens the stored devices (at start-up).
    pub async fn load(core: &Core) -> Result<()> {
        let configs: Vec<DeviceConfig> = core.get_json(AUDIT_KEY).await?.unwrap_or_default();
        let mut devices = Vec::new();
        for config in configs {
            let path = config.path.clone();
            match Device::open(config) {
                Ok(d) => devices.push(d),
                // A device that cannot open stays configured; requests then fail closed
                // if no other device works, which is the point.
                Err(e) => {
                    tracing::error!(device = %path, error = %e, "audit device could not be opened")
                }
            }
        }
        *core.audit.devices.lock().expect("audit lock") = devices;
        Ok(())
    }

    /// Whether any device is enabled.
    pub fn enabled(&self) -> bool {
        !self.devices.lock().expect("audit lock").is_empty()
    }

    fn write_all(&self, build: impl Fn(&DeviceConfig) -> Map<String, Value>) -> Result<()> {
        let mut devices = self.devices.lock().expect("audit lock");
        if devices.is_empty() {
            return Ok(());
        }
        let mut written = 0;
        for device in devices.iter_mut() {
            let entry = build(&device.config);
            match device.write(entry) {
                Ok(()) => written += 1,
                Err(e) => {
                    tracing::error!(device = %device.config.path, error = %e, "audit device failed to record an entry")
                }
            }
        }
        if written == 0 {
            return Err(EngineError::Internal(
                "no audit device succeeded in logging the request; it was not executed".into(),
            ));
        }
        Ok(())
    }

    /// Records a request; fails when devices are enabled and none recorded it.
    pub fn log_request(&self, req: &RequestInfo, error: Option<&str>) -> Result<()> {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        self.write_all(|device| {
            let raw = device.option_bool("log_raw", false);
            let mut entry = Map::new();
            entry.insert("type".into(), json!("request"));
            entry.insert("time".into(), json!(time));
            entry.insert("auth".into(), auth_block(device, req, raw));
            entry.insert("request".into(), request_block(device, req, raw));
            if let Some(e) = error {
                entry.insert("error".into(), json!(e));
            }
            entry
        })
    }

    /// Records a response.
    pub fn log_response(&self, req: &RequestInfo, resp: &ResponseInfo) -> Result<()> {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        self.write_all(|device| {
            let raw = device.option_bool("log_raw", false);
            let skip = device.option_list("non_hmac_response_keys");
            let hash = |v: &Value| {
                if raw {
                    v.clone()
                } else {
                    hash_value(device, v, &skip)
                }
            };
            let mut response = Map::new();
            if let Some(data) = &resp.data {
                response.insert("data".into(), hash(&Value::Object(data.clone())));
            }
            if let Some(auth) = &resp.auth {
                let mut auth = hash(auth);
                // Numbers and booleans stay readable; the token and accessor are hashed above.
                if let Some(obj) = auth.as_object_mut() {
                    obj.remove("metadata");
                }
                response.insert("auth".into(), auth);
            }
            if let Some(lease) = &resp.lease_id {
                response.insert("secret".into(), json!({ "lease_id": lease }));
            }
            if !resp.warnings.is_empty() {
                response.insert("warnings".into(), json!(resp.warnings));
            }
            let mut entry = Map::new();
            entry.insert("type".into(), json!("response"));
            entry.insert("time".into(), json!(time));
            entry.insert("auth".into(), auth_block(device, req, raw));
            entry.insert("request".into(), request_block(device, req, raw));
            entry.insert("response".into(), Value::Object(response));
            if let Some(e) = &resp.error {
                entry.insert("error".into(), json!(e));
            }
            entry
        })
    }

    /// Reopens files (after log rotation).
    pub fn reopen(&self) {
        for device in self.devices.lock().expect("audit lock").iter_mut() {
            if let Err(e) = device.reopen() {
                tracing::error!(device = %device.config.path, error = %e, "reopening audit file failed");
            }
        }
    }

    /// Enabled devices with their chain position.
    pub fn describe(&self) -> Vec<(DeviceConfig, u64, String)> {
        self.devices
            .lock()
            .expect("audit lock")
            .iter()
            .map(|d| (d.config.clone(), d.seq, d.prev_hash.clone()))
            .collect()
    }
}

/// Enables a device (`sys/audit/:path`).
pub async fn enable(
    core: &Core,
    path: &str,
    kind: DeviceKind,
    description: &str,
    options: Map<String, Value>,
) -> Result<()> {
    let path = path.trim_matches('/').to_owned();
    if path.is_empty() || path.contains('/') {
        return Err(invalid("audit device path must be one segment"));
    }
    let mut configs: Vec<DeviceConfig> = core.get_json(AUDIT_KEY).await?.unwrap_or_default();
    if configs.iter().any(|c| c.path == path) {
        return Err(invalid(format!("path already in use: {path}/")));
    }
    let config = DeviceConfig {
        path,
        kind,
        description: description.to_owned(),
        options,
        salt: hex::encode(crate::crypto::random_bytes::<32>()),
    };
    // Open first: a device that cannot write is refused instead of silently failing later.
    let device = Device::open(config.clone())?;
    configs.push(config);
    core.put_json(AUDIT_KEY, &configs).await?;
    core.audit.devices.lock().expect("audit lock").push(device);
    Ok(())
}

/// Disables a device.
pub async fn disable(core: &Core, path: &str) -> Result<()> {
    let path = path.trim_matches('/');
    let mut configs: Vec<DeviceConfig> = core.get_json(AUDIT_KEY).await?.unwrap_or_default();
    configs.retain(|c| c.path != path);
    core.put_json(AUDIT_KEY, &configs).await?;
    core.audit
        .devices
        .lock()
        .expect("audit lock")
        .retain(|d| d.config.path != path);
    Ok(())
}

/// `sys/audit-hash/:path`: the HMAC a device would write for `input`.
pub fn hash_with(core: &Core, path: &str, input: &str) -> Result<String> {
    core.audit
        .describe()
        .into_iter()
        .find(|(c, _, _)| c.path == path.trim_matches('/'))
        .map(|(c, _, _)| c.hash(input))
        .ok_or_else(|| invalid(format!("unknown audit device \"{path}\"")))
}
