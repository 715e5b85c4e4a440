//! Throwaway PostgreSQL clusters: one shared per test process, and private ones a test can
//! stop and start (fault tests).

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

static SHARED: OnceLock<TempPostgres> = OnceLock::new();

/// Directory names under [`std::env::temp_dir`] start with this; leftovers of dead processes
/// are stopped and removed by the next process that starts a cluster.
const DIR_PREFIX: &str = "dbwarden-test-pg-";

/// A PostgreSQL cluster in a temporary directory, listening on `127.0.0.1:<free port>`.
///
/// - Every TCP login needs a password (`scram-sha-256`); the superuser is `postgres` with a
///   random password ([`TempPostgres::superuser_password`]).
/// - TLS is on, with a throwaway CA ([`TempPostgres::tls_root_cert`]) and a server
///   certificate for `127.0.0.1` and `localhost`, when `openssl` is installed.
/// - Durability is off (`fsync`, `full_page_writes`): it is a test, and the machine does not
///   crash under it. The shared cluster also has `synchronous_commit` off; a private one keeps
///   it on, so a commit it acknowledged survives [`TempPostgres::stop`] (a crash of the server
///   process, not of the machine).
/// - When the tests run as root, the cluster runs as the `postgres` OS user (`runuser`),
///   since PostgreSQL refuses to run as root.
///
/// Started once per process by [`TempPostgres::shared`] and stopped at process exit, or
/// owned by one test through [`TempPostgres::private`] and removed when dropped.
#[derive(Debug)]
pub struct TempPostgres {
    root: PathBuf,
    data: PathBuf,
    bindir: PathBuf,
    port: u16,
    password: String,
    tls_root_cert: Option<PathBuf>,
    run_as_postgres: bool,
}

impl TempPostgres {
    /// The cluster of this test process, started on first use.
    ///
    /// Blocks for a few seconds the first time (`initdb` and start); panics if PostgreSQL
    /// cannot be started, with the server log in the message.
    pub fn shared() -> &'static TempPostgres {
        SHARED.get_or_init(|| {
            let pg = TempPostgres::launch(false)
                .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"));
            // SAFETY: `stop_shared_at_exit` is a plain `extern "C" fn` that only reads a
            // `OnceLock` and runs `pg_ctl`; registering it has no other precondition.
            unsafe {
                libc::atexit(stop_shared_at_exit);
            }
            pg
        })
    }

    /// A cluster of the caller's own, which it may [`stop`](TempPostgres::stop) and
    /// [`start`](TempPostgres::start) again (an outage that other tests must not see).
    /// Removed when dropped; if the process dies first, the next process that starts a
    /// cluster removes it.
    ///
    /// Blocks for a few seconds (`initdb` and start); panics if PostgreSQL cannot be
    /// started, with the server log in the message.
    pub fn private() -> TempPostgres {
        TempPostgres::launch(true)
            .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"))
    }

    /// Stops the server at once (`pg_ctl -m immediate`: no clean shutdown, as in a crash),
    /// keeping its data; every open connection is cut and new ones are refused.
    pub fn stop(&self) {
        let _ = self.pg_ctl_stop();
    }

    /// Starts a stopped server again on the same port and waits until it accepts
    /// connections (after crash recovery); panics with the server log if it cannot.
    pub fn start(&self) {
        self.pg_ctl_start(self.port).unwrap_or_else(|log| {
            panic!("cannot restart the PostgreSQL on port {}: {log}", self.port)
        });
    }

    /// The contents of database `db` as `pg_dump` writes them (plain SQL, data only).
    /// `bytea` values appear hex-encoded (`\\x...`).
    pub fn dump(&self, db: &str) -> Vec<u8> {
        let out = Command::new(self.bindir.join("pg_dump"))
            .args(["--data-only", "--no-owner", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "postgres", db])
            .env("PGPASSWORD", &self.password)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("pg_dump: {e}"));
        assert!(
            out.status.success(),
            "pg_dump {db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host to connect to.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The superuser's name (`postgres`).
    pub fn superuser(&self) -> &'static str {
        "postgres"
    }

    /// The superuser's password (`[A-Za-z0-9-]`, so it needs no escaping).
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// The PEM file of the CA that signed the server certificate, if TLS is on.
    pub fn tls_root_cert(&self) -> Option<&Path> {
        self.tls_root_cert.as_deref()
    }

    /// The superuser URL for the `postgres` database (TLS off).
    pub fn admin_url(&self) -> String {
        self.url_for("postgres")
    }

    /// The superuser URL for database `db` (TLS off).
    pub fn url_for(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}?sslmode=disable",
            self.password, self.port
        )
    }

    /// A Vault-style `connection_url` for `db`, with `{{username}}` and `{{password}}`.
    pub fn connection_url_template(&self, db: &str) -> String {
        format!(
            "postgres://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Connects as the superuser to `db` (the connection is driven by a spawned task).
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        self.connect_as(db, "postgres", &self.password)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"))
    }

    /// Connects as any user to `db`, without TLS.
    pub async fn connect_as(
        &self,
        db: &str,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .dbname(db)
            .user(user)
            .password(password)
            .application_name("dbwarden-testkit")
            .connect_timeout(std::time::Duration::from_secs(10));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Creates database `name` (`[a-z0-9_]` only) owned by the superuser.
    pub async fn create_database(&self, name: &str) {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "database names in tests are [a-z0-9_]: {name:?}"
        );
        self.connect("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    }

    /// Creates and starts a cluster; `crash_safe` keeps `synchronous_commit` on, so an
    /// immediate stop loses no acknowledged commit.
    fn launch(crash_safe: bool) -> Result<TempPostgres, String> {
        let bindir = find_bindir()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let run_as_postgres = unsafe { libc::geteuid() } == 0;
        reap_leftovers(&bindir, run_as_postgres);

        let root = crate::owned_temp_dir(DIR_PREFIX)?;
        let sock = root.join("sock");
        fs::create_dir(&sock).map_err(|e| e.to_string())?;
        let password = crate::unique_name("Pg-");
        fs::write(root.join("pwfile"), &password).map_err(|e| e.to_string())?;
        let tls = make_tls(&root);
        let data = root.join("data");
        let mut pg = TempPostgres {
            root: root.clone(),
            data: data.clone(),
            bindir,
            port: 0,
            password,
            tls_root_cert: tls.as_ref().map(|t| t.ca.clone()),
            run_as_postgres,
        };
        if run_as_postgres {
            let (uid, gid) = postgres_ids()?;
            chown_tree(&root, uid, gid)?;
        }

        pg.run_checked(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                format!("--pwfile={}", root.join("pwfile").display()).as_ref(),
                "--auth-host=scram-sha-256".as_ref(),
                "--auth-local=peer".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        fs::write(
            data.join("pg_hba.conf"),
            "local all postgres peer\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host all all ::1/128 scram-sha-256\n",
        )
        .map_err(|e| e.to_string())?;
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .map_err(|e| e.to_string())?;
        let mut settings = format!(
            "\n# dbwarden-testkit\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_buffers = 16MB\nmax_connections = 200\nfsync = off\nsynchronous_commit = {}\n\
             full_page_writes = off\npassword_encryption = 'scram-sha-256'\n",
            sock.display(),
            if crash_safe { "on" } else { "off" }
        );
        if let Some(tls) = &tls {
            settings.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                tls.cert.display(),
                tls.key.display()
            ));
        }
        conf.write_all(settings.as_bytes())
            .map_err(|e| e.to_string())?;
        drop(conf);

        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            match pg.pg_ctl_start(port) {
                Ok(()) => {
                    pg.port = port;
                    return Ok(pg);
                }
                Err(log) => last_error = log,
            }
        }
        Err(format!("pg_ctl start failed; server log:\n{last_error}"))
    }

    /// Starts the server on `port` and waits until it is ready; the error is the server log.
    fn pg_ctl_start(&self, port: u16) -> Result<(), String> {
        let log = self.root.join("postgres.log");
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {port}"))
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(fs::read_to_string(&log).unwrap_or_default())
        }
    }

    fn pg_ctl_stop(&self) -> std::io::Result<std::process::ExitStatus> {
        self.command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    }

    /// Stops the cluster at once and removes its directory (best effort).
    fn destroy(&self) {
        let _ = self.pg_ctl_stop();
        let _ = fs::remove_dir_all(&self.root);
    }

    fn command(&self, program: &str) -> Command {
        command(&self.bindir, program, self.run_as_postgres)
    }

    fn run_checked(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        // Only private clusters are ever dropped: the shared one lives in a static.
        self.destroy();
    }
}

extern "C" fn stop_shared_at_exit() {
    if let Some(pg) = SHARED.get() {
        pg.destroy();
    }
}

fn command(bindir: &Path, program: &str, run_as_postgres: bool) -> Command {
    let path = bindir.join(program);
    if run_as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

fn find_bindir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("DBWARDEN_TEST_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "no PostgreSQL found: set DBWARDEN_TEST_PG_BINDIR or install postgresql".to_owned()
        })?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates
        .pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".to_owned())
}

/// Stops and removes clusters whose owning test process is gone.
fn reap_leftovers(bindir: &Path, run_as_postgres: bool) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let owner = fs::read_to_string(dir.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = owner.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if alive {
            continue;
        }
        let _ = command(bindir, "pg_ctl", run_as_postgres)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&dir);
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| format!("id: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| "running as root but there is no `postgres` OS user".to_owned())
    };
    Ok((id("-u")?, id("-g")?))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))?;
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| e.to_string())? {
            chown_tree(&entry.map_err(|e| e.to_string())?.path(), uid, gid)?;
        }
    }
    Ok(())
}

struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A throwaway CA and a server certificate for 127.0.0.1/localhost, made with `openssl`.
fn make_tls(root: &Path) -> Option<TlsFiles> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = root.join("tls");
    fs::create_dir(&dir).ok()?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let run = |args: &[&str]| {
        Command::new("openssl")
            .current_dir(&dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let ok = run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "3",
            "-subj",
            "/CN=dbwarden test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat())
        && run(&[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat())
        && run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-out",
            "server.crt",
            "-extfile",
            "server.ext",
        ]);
    if !ok {
        return None;
    }
    fs::set_permissions(dir.join("server.key"), fs::Permissions::from_mode(0o600)).ok()?;
    Some(TlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    })
}
