//! Telling the application that new credentials are on disk.
//!
//! Either a command (an argument vector, never a shell string, so nothing in it is
//! interpolated; it gets no secret, only `DBWARDEN_SECRET` naming the secret) or a signal to
//! the process whose pid is in a file (the Pod needs `shareProcessNamespace: true`).

use std::path::PathBuf;
use std::time::Duration;

use rustix::process::{Pid, Signal};

use super::config::ReloadConfig;

/// Default time a reload command may run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors running a reload action.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The command could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command ran too long and was killed.
    #[error("{program} did not finish within {timeout:?}")]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        timeout: Duration,
    },
    /// The command failed.
    #[error("{program} exited with {status}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The pid file could not be read or holds no pid.
    #[error("pid file {path}: {message}")]
    PidFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The signal could not be sent.
    #[error("cannot signal pid {pid}: {source}")]
    Signal {
        /// The process.
        pid: i32,
        /// Why.
        source: std::io::Error,
    },
}

/// A reload action.
#[derive(Debug, Clone)]
pub enum Reload {
    /// Run a command.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// Time limit.
        timeout: Duration,
    },
    /// Signal a process named by a pid file.
    Signal {
        /// The pid file.
        pid_file: PathBuf,
        /// The signal.
        signal: Signal,
    },
}

/// The signals a reload may send, by name (with or without `SIG`).
pub fn parse_signal(name: &str) -> Option<Signal> {
    let name = name.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Some(match name {
        "HUP" => Signal::HUP,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "INT" => Signal::INT,
        "TERM" => Signal::TERM,
        "QUIT" => Signal::QUIT,
        _ => return None,
    })
}

impl Reload {
    /// Builds the action from validated configuration.
    pub fn from_config(config: &ReloadConfig) -> Reload {
        match (&config.command, &config.pid_file) {
            (Some(argv), _) => Reload::Command {
                argv: argv.clone(),
                timeout: config.timeout.unwrap_or(DEFAULT_TIMEOUT),
            },
            (None, pid_file) => Reload::Signal {
                pid_file: pid_file.clone().unwrap_or_default(),
                signal: config
                    .signal
                    .as_deref()
                    .and_then(parse_signal)
                    .unwrap_or(Signal::HUP),
            },
        }
    }

    /// Runs the action for secret `secret`.
    pub async fn run(&self, secret: &str) -> Result<(), ReloadError> {
        match self {
            Reload::Command { argv, timeout } => {
                let program = argv[0].clone();
                let mut child = tokio::process::Command::new(&program)
                    .args(&argv[1..])
                    .env("DBWARDEN_SECRET", secret)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|source| ReloadError::Spawn {
                        program: program.clone(),
                        source,
                    })?;
                let status = tokio::time::timeout(*timeout, child.wait())
                    .await
                    .map_err(|_| ReloadError::Timeout {
                        program: program.clone(),
                        timeout: *timeout,
                    })?
                    .map_err(|source| ReloadError::Spawn {
                        program: program.clone(),
                        source,
                    })?;
                if status.success() {
                    Ok(())
                } else {
                    Err(ReloadError::Failed { program, status })
                }
            }
            Reload::Signal { pid_file, signal } => {
                let pid_error = |message: String| ReloadError::PidFile {
                    path: pid_file.clone(),
                    message,
                };
                let text = tokio::fs::read_to_string(pid_file)
                    .await
                    .map_err(|e| pid_error(e.to_string()))?;
                let raw: i32 = text
                    .trim()
                    .parse()
                    .map_err(|_| pid_error("does not hold a pid".into()))?;
                // Pid 0 and negative pids would signal whole process groups.
                let pid = Pid::from_raw(raw)
                    .filter(|_| raw > 0)
                    .ok_or_else(|| pid_error("does not hold a positive pid".into()))?;
                rustix::process::kill_process(pid, *signal).map_err(|e| ReloadError::Signal {
                    pid: raw,
                    source: e.into(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("hup"), Some(Signal::HUP));
        assert_eq!(parse_signal("SIGUSR1"), Some(Signal::USR1));
        assert_eq!(parse_signal("KILL"), None);
    }

    #[tokio::test]
    async fn commands_report_failure_and_timeouts() {
        let ok = Reload::Command {
            argv: vec!["true".into()],
            timeout: DEFAULT_TIMEOUT,
        };
        ok.run("s").await.unwrap();
        let fail = Reload::Command {
            argv: vec!["false".into()],
            timeout: DEFAULT_TIMEOUT,
        };
        assert!(matches!(
            fail.run("s").await,
            Err(ReloadError::Failed { .. })
        ));
        let slow = Reload::Command {
            argv: vec!["sleep".into(), "5".into()],
            timeout: Duration::from_millis(100),
        };
        assert!(matches!(
            slow.run("s").await,
            Err(ReloadError::Timeout { .. })
        ));
    }

    #[tokio::test]
    async fn signals_go_to_the_pid_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid_file = dir.path().join("app.pid");
        std::fs::write(&pid_file, format!("{}\n", child.id().unwrap())).unwrap();
        let reload = Reload::Signal {
            pid_file: pid_file.clone(),
            signal: Signal::TERM,
        };
        reload.run("s").await.unwrap();
        let status = child.wait().await.unwrap();
        assert!(!status.success());
        std::fs::write(&pid_file, "0").unwrap();
        assert!(matches!(
            reload.run("s").await,
            Err(ReloadError::PidFile { .. })
        ));
    }
}
