//! Atomic file writes: a reader sees the old file or the new one, never half of either.
//!
//! The contents go to a temporary file in the destination directory (same filesystem, so the
//! rename is atomic), created with mode 0600 so nobody else can read it while it is written,
//! then get their final mode and owner, are fsynced, and are renamed over the destination;
//! the directory is fsynced last so the rename survives a crash. This is consul-template's
//! `AtomicWrite`, which Vault's agent uses.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Who owns a written file (each part optional; `None` keeps the writer's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
}

/// Writes `contents` to `path` atomically with `mode` and `owner`, creating the directory
/// if needed.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, owner: Owner) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let suffix: u64 = rand::random();
    let tmp = dir.join(format!(".{name}.{suffix:016x}.tmp"));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        if owner.uid.is_some() || owner.gid.is_some() {
            std::os::unix::fs::fchown(&file, owner.uid, owner.gid)?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `path` already holds exactly `contents` (a missing file does not).
pub fn holds(path: &Path, contents: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|existing| existing == contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_with_mode_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/db-pass");
        write_atomic(&path, b"one", 0o400, Owner::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o400);
        // A 0400 file is replaced by rename, which needs no write permission on the file.
        write_atomic(&path, b"two", 0o440, Owner::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o440);
        assert!(holds(&path, b"two"));
        assert!(!holds(&path, b"one"));
        assert!(!holds(&dir.path().join("missing"), b""));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("db-pass")]);
    }

    #[test]
    fn owner_is_applied_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let me = std::fs::metadata(dir.path()).unwrap();
        // Chowning to one's own ids always works, root or not.
        let owner = Owner {
            uid: Some(me.uid()),
            gid: Some(me.gid()),
        };
        write_atomic(&path, b"x", 0o400, owner).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (me.uid(), me.gid()));
    }
}
