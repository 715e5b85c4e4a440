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

    /// The message alone (for `Statement`, the server's message without the position).
    pub fn message(&self) -> &str {
        match self {
            BackendError::InvalidConfig(m)
            | BackendError::InvalidRequest(m)
            | BackendError::Connect(m)
            | BackendError::Transient(m)
            | BackendError::Database(m)
            | BackendError::Statement { message: m, .. } => m,
        }
    }

    /// The message, to rewrite in place (redaction).
    pub fn message_mut(&mut self) -> &mut String {
        match self {
            BackendError::InvalidConfig(m)
            | BackendError::InvalidRequest(m)
            | BackendError::Connect(m)
            | BackendError::Transient(m)
            | BackendError::Database(m)
            | BackendError::Statement { message: m, .. } => m,
        }
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
///
/// Occurrences are found in the original message, overlapping ones included, and each
/// stretch of text covered by any of them becomes one `[redacted]`. Replacing one secret
/// after the other would leak the rest of a secret that overlaps an earlier one (`pass` and
/// `password1` turned `password1` into `[redacted]word1`).
pub fn redact(message: &str, secrets: &[&str]) -> String {
    let mut hidden = vec![false; message.len()];
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        for (at, _) in message.char_indices() {
            if message[at..].starts_with(secret) {
                hidden[at..at + secret.len()].fill(true);
            }
        }
    }
    let mut out = String::with_capacity(message.len());
    for (at, c) in message.char_indices() {
        if !hidden[at] {
            out.push(c);
        } else if at == 0 || !hidden[at - 1] {
            out.push_str("[redacted]");
        }
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

    /// Found by the `plugin_protocol` fuzz target: secrets were replaced one after the other,
    /// so a secret overlapping an earlier one (or itself) was redacted only in part.
    #[test]
    fn redact_hides_overlapping_secrets_whole() {
        assert_eq!(redact("password1", &["pass", "password1"]), "[redacted]");
        assert_eq!(redact("aXaXa!", &["aXa"]), "[redacted]!");
        assert_eq!(
            redact("x pass word1 y", &["pass", "word1"]),
            "x [redacted] [redacted] y"
        );
        assert_eq!(redact("näive ä", &["ä"]), "n[redacted]ive [redacted]");
    }
}
