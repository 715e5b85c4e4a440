//! A throwaway OceanBase server (seekdb, MySQL mode) per test process.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable as _;

use crate::TestMysql;

static SHARED: OnceLock<TestSeekdb> = OnceLock::new();

/// The running server process, stopped at exit.
static CHILD: Mutex<Option<Child>> = Mutex::new(None);

/// Directory names under [`std::env::temp_dir`] start with this; leftovers of dead processes
/// are stopped and removed by the next process that starts a server.
const DIR_PREFIX: &str = "dbwarden-test-seekdb-";

/// The PyPI package that ships the `seekdb` binary, and the version the tests were written
/// against.
const PACKAGE: &str = "pylibseekdb==1.4.0.post1";

/// seekdb's smallest settings that start here: below 3G of `memory_limit` or 2G of
/// `log_disk_size` it refuses its own resource unit (OB_RESOURCE_UNIT_VALUE_INVALID). The log
/// disk is allocated lazily: the directory takes about 400 MB.
const PARAMETERS: &[&str] = &["datafile_size=256M", "log_disk_size=2G", "memory_limit=3G"];

/// An OceanBase server in MySQL mode: the `seekdb` binary from PyPI's `pylibseekdb`, in a
/// temporary directory, on `127.0.0.1:<free port>`, with `root` protected by a random
/// password.
///
/// The binary is found through `DBWARDEN_TEST_SEEKDB` (its path), else in the installed
/// `pylibseekdb` package; if neither exists the harness runs `pip install pylibseekdb` once
/// (CI installs it up front, see `.ci/run`). Started once per process by
/// [`TestSeekdb::shared`] (about 2 s) and stopped at process exit.
#[derive(Debug)]
pub struct TestSeekdb {
    root: PathBuf,
    server: TestMysql,
    version: String,
}

impl TestSeekdb {
    /// The server of this test process, started on first use.
    ///
    /// Panics if seekdb cannot be installed or started, with its log in the message.
    pub fn shared() -> &'static TestSeekdb {
        SHARED.get_or_init(|| {
            let server = TestSeekdb::start().unwrap_or_else(|e| panic!("cannot start seekdb: {e}"));
            // SAFETY: `stop_shared_at_exit` is a plain `extern "C" fn` that only takes the
            // child out of a mutex, signals it and removes a directory.
            unsafe {
                libc::atexit(stop_shared_at_exit);
            }
            server
        })
    }

    /// The server as a MySQL-wire test server (host, port, admin, helpers).
    pub fn server(&self) -> &TestMysql {
        &self.server
    }

    /// What the server reports: `version()` and `@@version_comment`, e.g.
    /// `5.7.25-OceanBase seekdb-v1.4.0.0 (OceanBase 4.3.5.3 seekdb (r1.4.0.0) ...)`.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn start() -> Result<TestSeekdb, String> {
        let binary = find_binary()?;
        reap_leftovers();
        let root = crate::owned_temp_dir(DIR_PREFIX)?;
        let mut last_error = String::new();
        for attempt in 0..3 {
            let base = root.join(format!("base{attempt}"));
            fs::create_dir(&base).map_err(|e| e.to_string())?;
            let port = free_port()?;
            let log = fs::File::create(base.join("seekdb.out")).map_err(|e| e.to_string())?;
            let mut command = Command::new(&binary);
            command
                .args(["--nodaemon", "--port", &port.to_string(), "--base-dir"])
                .arg(&base);
            for parameter in PARAMETERS {
                command.args(["--parameter", parameter]);
            }
            let child = command
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("{}: {e}", binary.display()))?;
            fs::write(root.join("seekdb.pid"), child.id().to_string())
                .map_err(|e| e.to_string())?;
            *CHILD.lock().expect("not poisoned") = Some(child);
            match wait_ready(port) {
                Ok((password, version)) => {
                    return Ok(TestSeekdb {
                        root,
                        server: TestMysql::at("127.0.0.1", port, "root", &password),
                        version,
                    });
                }
                Err(e) => {
                    stop_child();
                    last_error = format!("{e}\n{}", log_tail(&base));
                }
            }
        }
        let _ = fs::remove_dir_all(&root);
        Err(last_error)
    }
}

/// Waits until root can log in (no password yet), gives root a random password and reads
/// the version. Runs on a thread of its own so that callers inside a tokio runtime can block.
fn wait_ready(port: u16) -> Result<(String, String), String> {
    let pw = crate::unique_name("Sk-");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            let fresh = TestMysql::at("127.0.0.1", port, "root", "");
            let mut conn = loop {
                if let Some(exit) = child_exit() {
                    return Err(format!("seekdb exited during start-up ({exit})"));
                }
                match fresh.connect_as("root", "", None).await {
                    Ok(conn) => break conn,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!("seekdb not ready after 90 s: {e}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            conn.query_drop(format!("ALTER USER 'root'@'%' IDENTIFIED BY '{pw}'"))
                .await
                .map_err(|e| format!("setting root's password: {e}"))?;
            let version: Option<(String, String)> = conn
                .query_first("SELECT version(), @@version_comment")
                .await
                .map_err(|e| format!("reading the version: {e}"))?;
            let _ = conn.disconnect().await;
            let (version, comment) = version.unwrap_or_default();
            Ok((pw, format!("{version} ({comment})")))
        })
    })
    .join()
    .map_err(|_| "the start-up thread panicked".to_owned())?
}

/// `Some(status)` once the server process has exited.
fn child_exit() -> Option<String> {
    let mut child = CHILD.lock().expect("not poisoned");
    match child.as_mut()?.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        _ => None,
    }
}

/// Stops the server: SIGTERM, then SIGKILL after 10 s.
fn stop_child() {
    let Some(mut child) = CHILD.lock().ok().and_then(|mut c| c.take()) else {
        return;
    };
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: signalling a child process this process started and has not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

extern "C" fn stop_shared_at_exit() {
    stop_child();
    if let Some(server) = SHARED.get() {
        let _ = fs::remove_dir_all(&server.root);
    }
}

fn log_tail(base: &Path) -> String {
    let mut out = String::new();
    for file in [base.join("seekdb.out"), base.join("log").join("seekdb.log")] {
        if let Ok(text) = fs::read_to_string(&file) {
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("[INFO]") && !l.contains(" INFO "))
                .collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("--- {}\n{tail}\n", file.display()));
        }
    }
    out
}

/// The `seekdb` binary: `DBWARDEN_TEST_SEEKDB`, or the one in the installed `pylibseekdb`,
/// installing the package once if it is missing.
fn find_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("DBWARDEN_TEST_SEEKDB") {
        return Ok(PathBuf::from(path));
    }
    if let Some(path) = installed_binary() {
        return Ok(path);
    }
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", PACKAGE])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("python3 -m pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install {PACKAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    installed_binary().ok_or_else(|| {
        format!(
            "{PACKAGE} is installed but has no seekdb binary; set DBWARDEN_TEST_SEEKDB to its path"
        )
    })
}

/// The binary inside the installed package, found without importing it.
fn installed_binary() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('pylibseekdb'); \
             print(s.submodule_search_locations[0] if s else '')",
        ])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let binary = Path::new(&dir).join("seekdb");
    (!dir.is_empty() && binary.is_file()).then_some(binary)
}

/// Stops and removes servers whose owning test process is gone.
fn reap_leftovers() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let read_pid = |name: &str| {
            fs::read_to_string(dir.join(name))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = |pid: i32| unsafe { libc::kill(pid, 0) } == 0;
        if read_pid("owner.pid").is_some_and(alive) {
            continue;
        }
        if let Some(pid) = read_pid("seekdb.pid").filter(|pid| alive(*pid)) {
            // Only a process that is still the seekdb this harness started.
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(DIR_PREFIX) {
                // SAFETY: sending SIGKILL to a server a dead test process left behind.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}
