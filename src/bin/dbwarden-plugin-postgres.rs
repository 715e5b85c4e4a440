//! The PostgreSQL backend as an external plugin: register this binary at
//! `sys/plugins/catalog/database/:name` to run the backend outside the server's process.
//! The protocol is described in `plugins/sdk/PROTOCOL.md`.

fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    dbwarden_plugin::external::serve(&dbwarden_postgres::DESCRIPTOR)
}
