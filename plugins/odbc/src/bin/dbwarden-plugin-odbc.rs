//! The ODBC backend (`odbc-database-plugin`, `dameng-database-plugin`) as an external plugin:
//! the ODBC driver manager and the vendor's driver run in this process, never in the server's.
//! Register it at `sys/plugins/catalog/database/dameng-database-plugin` (for example) with
//! the `env` the driver needs (`ODBCSYSINI`, `LD_LIBRARY_PATH`, ...).

fn main() -> std::process::ExitCode {
    // unixODBC warns on every connection when a driver predates ODBC 3.80, which is harmless.
    dbwarden_plugin::external::serve_with_log_filter(
        &dbwarden_odbc::DESCRIPTOR,
        "info,odbc_api=error",
    )
}
