//! Errors a backend returns, and the redaction every message passes through.

/// What went wrong in a backend, classified so the engine can choose an HTTP status and a retry.
///
/// Messages never contain a password: backends build them with [`redact`] over every secret
/// the failing call knew, because some servers echo statement text in syntax errors.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The connection configuration is unusable (bad URL, unknown option, bad template).
    #[error("invalid connection configuration: {0}")]
    InvalidConfig(String),
    /// The request cannot be carried out as given (empty statements, username too long, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// The database could not be reached or refused the admin login.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// Statement `index` (1-based) of `total` failed; the transaction was rolled back.
    #[error("statement {index} of {total} failed: {message}")]
    Statement {
        /// 1-based position of the failing statement.
        index: usize,
        /// Number of statements in the batch.
        total: usize,
        /// The server's message, redacted.
        message: String,
    },
    /// A failure that is expected to pass on retry (lock conflicts, serialization failures).
    #[error("transient database error: {0}")]
    Transient(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}

impl BackendError {
    /// A short stable name for the kind of failure (metrics labels, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::InvalidConfig(_) => "invalid_config",
            BackendError::InvalidRequest(_) => "invalid_request",
            BackendError::Connect(_) => "connect",
            BackendError::Statement { .. } => "statement",
            BackendError::Transient(_) => "transient",
            BackendError::Database(_) => "database",
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Transient(_) | BackendError::Connect(_))
    }
}

/// Classifies the failure of a statement batch that ran in one transaction.
///
/// `index` is the 0-based failing statement (`None` for `BEGIN` or `COMMIT`), `message` the
/// server's redacted message, `transient` whether the error was retryable (in which case the
/// batch was already tried `attempts` times).
pub fn batch_failure(
    index: Option<usize>,
    total: usize,
    message: String,
    transient: bool,
    attempts: u32,
) -> BackendError {
    if transient {
        let at = index.map_or(String::new(), |i| {
            format!("statement {} of {total}: ", i + 1)
        });
        return BackendError::Transient(format!(
            "{at}{message} (gave up after {attempts} attempts)"
        ));
    }
    match index {
        Some(i) => BackendError::Statement {
            index: i + 1,
            total,
            message,
        },
        None => BackendError::Database(message),
    }
}

/// Replaces every occurrence of each non-empty secret in `message` with `[redacted]`.
pub fn redact(message: &str, secrets: &[&str]) -> String {
    let mut out = message.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, "[redacted]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_every_secret() {
        let msg = "syntax error near 'pa55' and pa55 again; user u1";
        assert_eq!(
            redact(msg, &["pa55", ""]),
            "syntax error near '[redacted]' and [redacted] again; user u1"
        );
    }
}
