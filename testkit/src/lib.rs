//! Test-only harness shared by the backends' tests and dbwarden's integration tests.
//!
//! - [`TempPostgres`]: a throwaway PostgreSQL cluster per test process (or a private one a
//!   test may stop and start), with password authentication for every TCP login. The machine's own PostgreSQL trusts local logins, so
//!   "the old password is refused" would prove nothing there.
//! - [`TestMysql`]: the MariaDB/MySQL server the tests may use (`127.0.0.1:3306`, `root`
//!   without a password, unless `DBWARDEN_TEST_MYSQL_URL` says otherwise), with a database per
//!   test.
//! - [`TestSeekdb`]: a throwaway OceanBase server (seekdb from PyPI's `pylibseekdb`, MySQL
//!   mode) per test process.
//! - [`Golden`], [`Transcript`], [`example`]: golden files under `testdata/` (re-blessed
//!   with `DBWARDEN_BLESS=1`), the format of the dialects' golden SQL and its fixed inputs.
//! - [`unique_name`]: names that cannot collide between tests running in parallel.
//!
//! | Server | Where it comes from | Versions tested |
//! |---|---|---|
//! | PostgreSQL | `initdb`/`pg_ctl` from `DBWARDEN_TEST_PG_BINDIR`, `pg_config --bindir`, or `/usr/lib/postgresql/*/bin` | 15 |
//! | MariaDB / MySQL | running server; `DBWARDEN_TEST_MYSQL_URL=mysql://user:pass@host:port` | MariaDB 10.11 |
//! | OceanBase (MySQL mode) | `seekdb` from PyPI `pylibseekdb` (`DBWARDEN_TEST_SEEKDB` overrides the binary) | seekdb 1.4 (OceanBase 4.3.5.3) |

mod golden;
mod mysql;
mod postgres;
mod seekdb;

pub use golden::{Golden, Transcript, example, password_summary, username_line};
pub use mysql::TestMysql;
pub use postgres::TempPostgres;
pub use seekdb::TestSeekdb;

/// A lower-case name `<prefix><10 random [a-z0-9]>`, unique across parallel tests and runs.
pub fn unique_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let suffix: String = (0..10)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Makes `<temp dir>/<prefix><pid>-<unique>` with `owner.pid` (this process) already in it.
///
/// The reapers remove directories with this prefix whose owner is dead or unknown; the
/// directory is built under another name and renamed, so one launched at the same moment by
/// another test never shows up without its owner and is never removed under its feet.
pub(crate) fn owned_temp_dir(prefix: &str) -> Result<std::path::PathBuf, String> {
    let name = format!("{prefix}{}-{}", std::process::id(), unique_name(""));
    let tmp = std::env::temp_dir();
    let staging = tmp.join(format!("staging-{name}"));
    let root = tmp.join(&name);
    std::fs::create_dir(&staging).map_err(|e| format!("mkdir {}: {e}", staging.display()))?;
    std::fs::write(staging.join("owner.pid"), std::process::id().to_string())
        .and_then(|()| std::fs::rename(&staging, &root))
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&staging);
            format!("{}: {e}", root.display())
        })?;
    Ok(root)
}

/// Installs rustls' `ring` provider as the process default (what the dbwarden binary does).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
