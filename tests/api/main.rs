//! End-to-end tests: the real `dbwarden` binary, real PostgreSQL, MariaDB and OceanBase
//! (seekdb), real clients.
//! One test binary (with modules) to keep link time down on small machines.

mod access;
mod agent;
mod audit;
mod auth_approle;
mod auth_kubernetes;
mod auth_secrets;
mod auth_userpass;
mod bench;
#[cfg(feature = "csi")]
mod csi;
mod deploy;
mod dialects;
mod external_plugin;
mod faults;
mod hvac;
mod k8s;
mod leases;
mod mysql;
mod oceanbase;
mod policy;
mod postgres;
mod restart;
mod rotation;
mod routes;
mod storage;
mod support;
mod torture;
