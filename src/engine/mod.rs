//! Domain logic: mounts, connections, roles, credential issuance and leases. No HTTP here,
//! and no SQL of target databases (that lives in the backends).

pub mod backends;
pub mod catalog;
pub mod database;
pub mod error;
pub mod hooks;
pub mod lease;
pub mod mounts;
pub mod password_policy;
pub mod rotation;
pub mod schedule;
pub mod ttl;
