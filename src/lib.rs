//! dbwarden: a dynamic database credential engine with a Vault-compatible API.
//!
//! Where things are:
//! - [`http`]: the only module that knows HTTP: Vault's envelope, verbs, field coercion,
//!   token and ACL checks, and the mapping of errors to statuses.
//! - [`engine`]: mounts, connections, roles, credential issuance, leases and their worker.
//! - [`auth`]: tokens, ACL policies, and the login methods mounted through `sys/auth`
//!   (AppRole, Kubernetes, userpass with TOTP) that issue tokens.
//! - [`audit`]: audit devices, HMAC of secrets, the hash chain and its verifier.
//! - [`crypto`]: the barrier (AES-256-GCM), the seal, password generation.
//! - [`storage`]: dbwarden's own storage (SQLite through rusqlite, or PostgreSQL through sqlx).
//! - [`core`]: the unsealed state shared by handlers and background tasks.
//! - [`config`], [`server`], [`operator`]: the configuration file and the commands.
//! - [`bench`]: `dbwarden bench`: load against a server, measured against the target
//!   database's own rate, and the lease-scale run.
//! - [`agent`]: the sidecar (`dbwarden agent`): auto-auth, files, renewal, rotation, reload.
//! - `csi` (cargo feature `csi`, on by default): the Secrets Store CSI driver provider
//!   (`dbwarden csi-provider`), gRPC over a unix socket with checked-in generated code.
//!
//! Backends (one crate per database family) live under `plugins/` and implement
//! [`dbwarden_plugin::DatabaseBackend`].

pub mod agent;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod config;
pub mod core;
pub mod crypto;
#[cfg(feature = "csi")]
pub mod csi;
pub mod engine;
pub mod http;
pub mod operator;
pub mod server;
pub mod storage;
