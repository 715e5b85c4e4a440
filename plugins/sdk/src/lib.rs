//! The contract between dbwarden and its database backends.
//!
//! A backend speaks to one family of databases (the PostgreSQL wire family, the MySQL wire
//! family, ...). dbwarden's engine owns everything that must be durable (leases, intents,
//! encrypted admin credentials); a backend owns only the connection pool and the SQL.
//!
//! Layout:
//! - [`backend`]: the [`DatabaseBackend`] trait, its request types, and [`BackendDescriptor`],
//!   the static entry that lets the engine resolve a `plugin_name` to a backend.
//! - [`statement`]: statement templates (`{{name}}`, `{{password}}`, ...) rendered into
//!   [`SqlText`], the only type a backend may send to a target database.
//! - [`template`]: username templates with Vault's function set.
//! - [`error`]: [`BackendError`], and redaction of secrets from server messages.
//! - [`details`]: lenient reading of connection details, pool settings, username rules.
//! - [`complexity`]: databases' password complexity rules and the dialects' default policy.
//! - [`conformance`]: the test kit every backend runs against its real server.
//! - [`external`]: out-of-process backends: the plugin protocol (`PROTOCOL.md`), the client
//!   the server uses, and [`external::serve`], which makes any backend a plugin binary.

pub mod backend;
pub mod complexity;
pub mod conformance;
pub mod details;
pub mod error;
pub mod external;
pub mod statement;
pub mod template;

pub use backend::{
    BackendDescriptor, ChangeExpiration, ChangePassword, DatabaseBackend, DeleteUserRequest,
    NewUserRequest, OpenFuture, OpenRequest, UpdateUserRequest, UsernameMetadata,
};
pub use error::BackendError;
pub use statement::{Quoting, SqlBuilder, SqlText, StatementVars};
pub use template::UsernameTemplate;
