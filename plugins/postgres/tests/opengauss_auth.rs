//! openGauss authentication detection, against a minimal fake server: a TCP listener that
//! answers every startup message with the authentication request openGauss sends (there is no
//! openGauss server to run here; the request layouts follow openGauss's `sendAuthRequest`).

use dbwarden_plugin::{BackendError, OpenRequest};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const ADMIN_PASSWORD: &str = "Gauss-Adm1n-Secret";

/// What the fake server answers a startup message with.
#[derive(Clone, Copy)]
enum Answer {
    /// Code 10 with openGauss's SHA256 body: stored method 2, 64-hex salt, 8-hex token,
    /// 64-hex server signature (sent to protocol-3.0 clients).
    Sha256,
    /// Code 11 with a 64-hex salt and a 4-byte MD5 salt.
    Md5Sha256,
    /// Code 13.
    Sm3,
    /// An ordinary PostgreSQL error, so no probe should be made.
    PasswordFailed,
}

fn auth_message(answer: Answer) -> Vec<u8> {
    let mut body = Vec::new();
    let tag = match answer {
        Answer::Sha256 => {
            body.extend_from_slice(&10_i32.to_be_bytes());
            body.extend_from_slice(&2_i32.to_be_bytes());
            body.extend_from_slice(&[b'a'; 64]);
            body.extend_from_slice(b"0123abcd");
            body.extend_from_slice(&[b'f'; 64]);
            b'R'
        }
        Answer::Md5Sha256 => {
            body.extend_from_slice(&11_i32.to_be_bytes());
            body.extend_from_slice(&[b'0'; 64]);
            body.extend_from_slice(&[1, 2, 3, 4]);
            b'R'
        }
        Answer::Sm3 => {
            body.extend_from_slice(&13_i32.to_be_bytes());
            body.extend_from_slice(&2_i32.to_be_bytes());
            b'R'
        }
        Answer::PasswordFailed => {
            for (field, value) in [
                (b'S', "FATAL"),
                (b'C', "28P01"),
                (b'M', "password authentication failed for user \"admin\""),
            ] {
                body.push(field);
                body.extend_from_slice(value.as_bytes());
                body.push(0);
            }
            body.push(0);
            b'E'
        }
    };
    let mut msg = vec![tag];
    msg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// Starts the fake server; returns its port. Each connection gets `answer` to its startup
/// message (an SSLRequest first is declined with 'N', as a server without TLS does).
async fn fake_server(answer: Answer) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                loop {
                    let Ok(len) = socket.read_i32().await else {
                        return;
                    };
                    let mut rest = vec![0; (len as usize).saturating_sub(4)];
                    if socket.read_exact(&mut rest).await.is_err() {
                        return;
                    }
                    if rest.get(..4) == Some(&80_877_103_i32.to_be_bytes()[..]) {
                        let _ = socket.write_all(b"N").await;
                        continue;
                    }
                    let _ = socket.write_all(&auth_message(answer)).await;
                    // openGauss waits for the password message; the driver gives up first.
                    let mut sink = [0; 256];
                    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                    return;
                }
            });
        }
    });
    port
}

async fn open(plugin: &str, port: u16, sslmode: &str) -> BackendError {
    dbwarden_testkit::install_crypto_provider();
    let request = OpenRequest {
        plugin_name: plugin.into(),
        details: json!({
            "connection_url": format!("postgres://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/app?sslmode={sslmode}"),
            "username": "admin",
            "password": ADMIN_PASSWORD,
        })
        .as_object()
        .cloned()
        .unwrap(),
        verify_connection: true,
    };
    match (dbwarden_postgres::DESCRIPTOR.open)(request).await {
        Ok(_) => panic!("a login to the fake server succeeded"),
        Err(e) => e,
    }
}

fn assert_explains(err: &BackendError, code: &str) {
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, BackendError::Connect(_)), "{err:?}");
    assert!(text.contains("password_encryption_type = 1"), "{text}");
    assert!(text.contains(&format!("request code {code}")), "{text}");
    assert!(text.contains("pg_hba.conf"), "{text}");
    assert!(!text.contains(ADMIN_PASSWORD), "{text}");
    assert!(!format!("{err:?}").contains(ADMIN_PASSWORD));
}

#[tokio::test]
async fn sha256_request_is_explained() {
    let port = fake_server(Answer::Sha256).await;
    assert_explains(
        &open("opengauss-database-plugin", port, "disable").await,
        "10",
    );
}

#[tokio::test]
async fn md5_sha256_request_is_explained() {
    let port = fake_server(Answer::Md5Sha256).await;
    assert_explains(
        &open("gaussdb-database-plugin", port, "disable").await,
        "11",
    );
}

#[tokio::test]
async fn sm3_request_is_explained() {
    let port = fake_server(Answer::Sm3).await;
    let err = open("vastbase-database-plugin", port, "disable").await;
    assert_explains(&err, "13");
    assert!(err.to_string().contains("change that pg_hba.conf entry"));
}

/// The probe negotiates TLS as the connection would (`prefer`: the server declines, plain
/// text follows), and it works whichever dialect of the family the DBA picked.
#[tokio::test]
async fn detected_with_sslmode_prefer_and_any_dialect_of_the_family() {
    let port = fake_server(Answer::Sha256).await;
    assert_explains(
        &open("postgresql-database-plugin", port, "prefer").await,
        "10",
    );
    assert_explains(
        &open("kingbase-database-plugin", port, "prefer").await,
        "10",
    );
}

/// A server error is reported as it is: no probe, no openGauss advice.
#[tokio::test]
async fn ordinary_errors_are_left_alone() {
    let port = fake_server(Answer::PasswordFailed).await;
    let err = open("opengauss-database-plugin", port, "disable").await;
    let text = err.to_string();
    assert!(matches!(err, BackendError::Connect(_)), "{err:?}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("password_encryption_type"), "{text}");
}

/// An unreachable server is reported as it is, without a second (probing) connection.
#[tokio::test]
async fn unreachable_servers_are_not_probed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let err = open("opengauss-database-plugin", port, "disable").await;
    let text = err.to_string();
    assert!(matches!(err, BackendError::Connect(_)), "{err:?}");
    assert!(!text.contains("password_encryption_type"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
