//! The hash chain that makes an audit file tamper-evident, and its verifier.
//!
//! Every line is a JSON object with `seq` (1, 2, 3, ... per device) and `prev_hash`: the
//! hex SHA-256 of the previous line's bytes (64 zeros for the first line a device writes).
//! Editing a line changes its hash, so the next line's `prev_hash` no longer matches;
//! removing or reordering lines breaks the `seq` sequence and the hashes. After log
//! rotation a file starts with the `prev_hash` of the last line of the file before it.

use sha2::{Digest, Sha256};

/// `prev_hash` of a device's first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain hash of one line (without its newline).
pub fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Lines checked.
    pub lines: u64,
    /// `seq` of the first line.
    pub first_seq: u64,
    /// `prev_hash` of the first line (the end of the previous file after rotation).
    pub anchor: String,
    /// Hash of the last line: what the next line (or file) must continue from.
    pub last_hash: String,
}

/// Why a file does not verify: the 1-based line number and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ChainError {
    /// The line where the chain breaks.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// Verifies the chain of an audit file's contents.
pub fn verify(contents: &str) -> Result<ChainSummary, ChainError> {
    let mut summary: Option<ChainSummary> = None;
    let mut number = 0u64;
    for line in contents.split('\n') {
        if line.is_empty() {
            continue;
        }
        number += 1;
        let fail = |reason: String| ChainError {
            line: number,
            reason,
        };
        let entry: serde_json::Value =
            serde_json::from_str(line).map_err(|e| fail(format!("not a JSON object: {e}")))?;
        let seq = entry["seq"].as_u64().ok_or_else(|| fail("no seq".into()))?;
        let prev = entry["prev_hash"]
            .as_str()
            .ok_or_else(|| fail("no prev_hash".into()))?;
        match &mut summary {
            None => {
                summary = Some(ChainSummary {
                    lines: 1,
                    first_seq: seq,
                    anchor: prev.to_owned(),
                    last_hash: line_hash(line),
                });
                if seq == 1 && prev != GENESIS {
                    return Err(fail(
                        "the first entry of a device must start the chain".into(),
                    ));
                }
            }
            Some(s) => {
                let expected = s.first_seq + s.lines;
                if seq != expected {
                    return Err(fail(format!(
                        "seq {seq} where {expected} was expected (a line was removed, inserted or moved)"
                    )));
                }
                if prev != s.last_hash {
                    return Err(fail(
                        "prev_hash does not match the previous line (the previous line was edited)"
                            .into(),
                    ));
                }
                s.lines += 1;
                s.last_hash = line_hash(line);
            }
        }
    }
    summary.ok_or(ChainError {
        line: 0,
        reason: "the file has no entries".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let line = format!(
                    "{{\"seq\":{seq},\"prev_hash\":\"{prev}\",\"type\":\"request\",\"x\":{seq}}}"
                );
                prev = line_hash(&line);
                line
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let lines = chain(5);
        let s = verify(&(lines.join("\n") + "\n")).unwrap();
        assert_eq!((s.lines, s.first_seq), (5, 1));
        assert_eq!(s.last_hash, line_hash(&lines[4]));
        // A rotated file continues from the previous one's last hash.
        let tail = lines[2..].join("\n");
        assert_eq!(verify(&tail).unwrap().anchor, line_hash(&lines[1]));
    }

    #[test]
    fn any_single_edit_removal_or_swap_fails() {
        let lines = chain(6);
        for i in 0..lines.len() - 1 {
            let mut edited = lines.clone();
            edited[i] = edited[i].replace("\"x\":", "\"x\": ");
            assert!(verify(&edited.join("\n")).is_err(), "edit of line {i}");
            let mut removed = lines.clone();
            removed.remove(i);
            if i > 0 {
                assert!(verify(&removed.join("\n")).is_err(), "removal of line {i}");
            }
            let mut swapped = lines.clone();
            swapped.swap(i, i + 1);
            assert!(verify(&swapped.join("\n")).is_err(), "swap of lines {i}");
        }
        // Removing the first line leaves a chain that starts at seq 2; the verifier reports
        // it, and `dbwarden audit verify` refuses it unless told where the file continues from.
        let mut first_removed = lines.clone();
        first_removed.remove(0);
        assert_eq!(
            verify(&first_removed.join("\n")).unwrap().first_seq,
            2,
            "reported, not hidden"
        );
    }
}
