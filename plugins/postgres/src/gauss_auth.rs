//! Recognising openGauss / GaussDB authentication, which PostgreSQL drivers cannot perform,
//! and telling the DBA which server setting lets dbwarden in.
//!
//! openGauss speaks the PostgreSQL v3 protocol but reuses authentication request codes
//! PostgreSQL assigns differently (openGauss `libpq/pqcomm.h`, `auth.cpp` `sendAuthRequest`):
//!
//! | Code | openGauss | PostgreSQL | Sent when (openGauss `sendAuthRequest`) |
//! |---|---|---|---|
//! | 10 | SHA256 | SASL | `pg_hba.conf` says `sha256` and the user's password is stored as SHA256 only (`password_encryption_type = 2`, the default) |
//! | 11 | MD5_SHA256 | SASL continue | `pg_hba.conf` says `md5` but the password is stored as SHA256 only |
//! | 13 | SM3 | (none) | `pg_hba.conf` says `sm3` |
//!
//! tokio-postgres reads code 10 as SASL and fails with "unsupported SASL mechanism", code 11
//! as an unexpected message, code 13 as an unknown tag: none of which helps a DBA. So when a
//! connection attempt fails without a server error, the backend opens one more connection,
//! sends the same startup message, reads the first authentication request itself and, if it
//! is one of these, replaces the error with the fix.
//!
//! The fix, from the same source: when a user's password is stored in both formats
//! (`password_encryption_type = 1`), openGauss answers a PostgreSQL client (protocol 3.0) with
//! plain MD5 authentication whether `pg_hba.conf` says `sha256` or `md5`. Hashes are computed
//! when a password is set, so the admin's password must be set again after the change
//! (Huawei GaussDB(DWS) `password_encryption_type`: "1 ... 兼容postgres客户端的MD5用户认证方式";
//! openGauss "Setting Password Security Policies").
//!
//! dbwarden does not implement the SHA256 exchange itself: it would mean carrying a fork of
//! the driver's handshake that nothing here can test against a real openGauss.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::SslMode;

/// An openGauss authentication request that PostgreSQL drivers cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GaussAuth {
    /// Code 10: SHA256.
    Sha256,
    /// Code 11: MD5 over a SHA256-only stored password.
    Md5Sha256,
    /// Code 13: SM3.
    Sm3,
}

impl GaussAuth {
    /// What the server asked for and which settings let dbwarden log in instead.
    pub(crate) fn advice(self) -> String {
        let (what, hba) = match self {
            GaussAuth::Sha256 => (
                "openGauss/GaussDB SHA256 authentication (request code 10), because the \
                 pg_hba.conf entry for dbwarden's address says sha256 and the user's password is \
                 stored as SHA256 only",
                "the pg_hba.conf entry may stay sha256 or become md5",
            ),
            GaussAuth::Md5Sha256 => (
                "openGauss/GaussDB MD5_SHA256 authentication (request code 11), because the \
                 pg_hba.conf entry for dbwarden's address says md5 but the user's password is \
                 stored as SHA256 only (it was set while password_encryption_type = 2)",
                "the pg_hba.conf entry can stay md5",
            ),
            GaussAuth::Sm3 => (
                "openGauss/GaussDB SM3 authentication (request code 13), because the pg_hba.conf \
                 entry for dbwarden's address says sm3",
                "change that pg_hba.conf entry's method to md5 (or sha256) and reload",
            ),
        };
        format!(
            "the server asked for {what}, which PostgreSQL drivers (dbwarden's included) do not \
             implement. To let dbwarden log in: set password_encryption_type = 1 on the server \
             (gs_guc reload -N all -I all -c \"password_encryption_type=1\"), then set the admin \
             user's password again (ALTER USER <admin> IDENTIFIED BY '...') so an MD5-compatible \
             hash is stored beside the SHA256 one; {hba}. The server then answers PostgreSQL \
             clients with MD5 authentication, and users dbwarden creates afterwards get both hashes"
        )
    }
}

/// Classifies the body of the server's first authentication request (`'R'` message).
///
/// Code 10 is also PostgreSQL's SASL request, whose body is a list of mechanism names; an
/// openGauss SHA256 request instead starts with the stored-password method (a small integer)
/// followed by a 64-character hex salt, which no mechanism name looks like.
pub(crate) fn classify(body: &[u8]) -> Option<GaussAuth> {
    let code = i32::from_be_bytes(body.get(..4)?.try_into().ok()?);
    let rest = &body[4..];
    let is_hex = |b: &[u8]| b.len() == 64 && b.iter().all(u8::is_ascii_hexdigit);
    match code {
        10 => {
            let method = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
            ((0..=4).contains(&method) && is_hex(rest.get(4..68)?)).then_some(GaussAuth::Sha256)
        }
        // PostgreSQL never opens with SASLContinue; openGauss sends the 64-hex SHA256 salt.
        11 => is_hex(rest.get(..64)?).then_some(GaussAuth::Md5Sha256),
        13 => Some(GaussAuth::Sm3),
        _ => None,
    }
}

/// Whether a failed login is worth a probe: the server answered, but not with an error of
/// its own. A server that could not be reached (refused, timed out, unknown host) is not
/// probed, so an outage does not cost a second connection attempt per failure.
pub(crate) fn worth_probing(err: &tokio_postgres::Error) -> bool {
    if err.as_db_error().is_some() {
        return false;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | TimedOut
                    | NotFound
                    | AddrNotAvailable
                    | HostUnreachable
                    | NetworkUnreachable
                    | PermissionDenied
            ) {
                return false;
            }
        }
        source = cause.source();
    }
    true
}

/// The StartupMessage of protocol 3.0 for `user` and `database`.
fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_i32.to_be_bytes());
    for (key, value) in [("user", user), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = Vec::with_capacity(body.len() + 4);
    msg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// Connects as `pg` would, sends the startup message and classifies the first
/// authentication request. `None` when the server asks for anything else or the probe fails.
///
/// It never sends a password: it stops reading after the first message.
pub(crate) async fn probe(
    pg: &tokio_postgres::Config,
    ssl_mode: SslMode,
    tls: &MakeRustlsConnect,
) -> Option<GaussAuth> {
    tokio::time::timeout(Duration::from_secs(10), probe_inner(pg, ssl_mode, tls))
        .await
        .ok()
        .flatten()
}

async fn probe_inner(
    pg: &tokio_postgres::Config,
    ssl_mode: SslMode,
    tls: &MakeRustlsConnect,
) -> Option<GaussAuth> {
    let user = pg.get_user()?;
    let database = pg.get_dbname().unwrap_or(user);
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let startup = startup_message(user, database);
    match pg.get_hosts().first()? {
        Host::Tcp(host) => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .ok()?;
            negotiate(stream, host, ssl_mode, tls, &startup).await
        }
        Host::Unix(dir) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            let stream = tokio::net::UnixStream::connect(path).await.ok()?;
            read_auth_request(stream, &startup).await
        }
    }
}

/// Asks for TLS as the connection's `sslmode` would, then reads the request.
async fn negotiate<S>(
    mut stream: S,
    host: &str,
    ssl_mode: SslMode,
    tls: &MakeRustlsConnect,
    startup: &[u8],
) -> Option<GaussAuth>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if ssl_mode == SslMode::Disable {
        return read_auth_request(stream, startup).await;
    }
    let mut ssl_request = Vec::with_capacity(8);
    ssl_request.extend_from_slice(&8_i32.to_be_bytes());
    ssl_request.extend_from_slice(&80_877_103_i32.to_be_bytes());
    stream.write_all(&ssl_request).await.ok()?;
    match stream.read_u8().await.ok()? {
        b'S' => {
            let mut make = tls.clone();
            let connect =
                <MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(&mut make, host).ok()?;
            let encrypted = connect.connect(stream).await.ok()?;
            read_auth_request(encrypted, startup).await
        }
        b'N' if ssl_mode == SslMode::Prefer => read_auth_request(stream, startup).await,
        _ => None,
    }
}

async fn read_auth_request<S>(mut stream: S, startup: &[u8]) -> Option<GaussAuth>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(startup).await.ok()?;
    stream.flush().await.ok()?;
    let tag = stream.read_u8().await.ok()?;
    let len = stream.read_i32().await.ok()?;
    if tag != b'R' || !(8..=4096).contains(&len) {
        return None;
    }
    let mut body = vec![0; len as usize - 4];
    stream.read_exact(&mut body).await.ok()?;
    classify(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        body
    }

    #[test]
    fn recognises_the_gauss_requests_only() {
        let salt = [b'a'; 64];
        let mut sha = 2_i32.to_be_bytes().to_vec();
        sha.extend_from_slice(&salt);
        sha.extend_from_slice(b"01234567");
        assert_eq!(classify(&request(10, &sha)), Some(GaussAuth::Sha256));
        let mut md5 = salt.to_vec();
        md5.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(classify(&request(11, &md5)), Some(GaussAuth::Md5Sha256));
        assert_eq!(classify(&request(13, &[])), Some(GaussAuth::Sm3));
        // PostgreSQL's own SASL request and the others are left to the driver.
        assert_eq!(classify(&request(10, b"SCRAM-SHA-256\0\0")), None);
        assert_eq!(classify(&request(11, b"r=abc,s=def,i=4096")), None);
        assert_eq!(classify(&request(5, &[1, 2, 3, 4])), None);
        assert_eq!(classify(&request(0, &[])), None);
        assert_eq!(classify(&[0, 0]), None);
    }

    #[test]
    fn startup_message_layout() {
        let msg = startup_message("u", "db");
        assert_eq!(&msg[..4], &(msg.len() as i32).to_be_bytes());
        assert_eq!(&msg[4..8], &196_608_i32.to_be_bytes());
        assert!(msg.ends_with(b"user\0u\0database\0db\0\0"));
    }

    #[test]
    fn advice_names_the_setting() {
        for kind in [GaussAuth::Sha256, GaussAuth::Md5Sha256, GaussAuth::Sm3] {
            let advice = kind.advice();
            assert!(advice.contains("password_encryption_type = 1"), "{advice}");
            assert!(advice.contains("pg_hba.conf"), "{advice}");
        }
    }
}
