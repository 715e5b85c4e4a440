//! The plugin catalog: external database plugins registered at
//! `sys/plugins/catalog/database/:name`, as in Vault.
//!
//! An entry names a `command` (relative to the server's `plugin_directory`), its `args` and
//! `env`, and the `sha256` of the binary. The hash is checked when the entry is written and
//! again **before every start** of the process, so a binary replaced after registration is
//! never run. A connection whose `plugin_name` is a catalog entry is served by the external
//! plugin (an entry shadows a built-in backend of the same name).
//!
//! Entries are stored (encrypted, like everything) under `core/plugins/database/<name>`.
//! The engine resolves `plugin_name`s through a static registry ([`super::backends`]), so a
//! process-wide mirror of the entries lives here: loaded from storage at start-up and updated
//! by every write. One server process serves one core, so the mirror is that core's. With
//! several replicas on PostgreSQL storage, an entry written on one replica reaches the others
//! when they restart.
//!
//! Known limit: the hash is checked on the file, then the file is executed by path; an
//! attacker able to replace the file between the two (write access to the plugin directory)
//! wins the race, as with Vault. Keep the plugin directory writable by root only.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{OnceLock, RwLock};

use dbwarden_plugin::external::{self, PluginCommand};
use dbwarden_plugin::{BackendDescriptor, BackendError, OpenFuture, OpenRequest};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::error::{Result, invalid};
use crate::core::Core;

/// Where entries are stored.
const PREFIX: &str = "core/plugins/database/";

/// One registered external plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The name connections use as `plugin_name`.
    pub name: String,
    /// The executable, relative to the plugin directory.
    pub command: String,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment, as `KEY=value` strings (not returned by reads: it may hold secrets).
    #[serde(default)]
    pub env: Vec<String>,
    /// Hex SHA-256 of the executable (lower case).
    pub sha256: String,
    /// A free-form version label.
    #[serde(default)]
    pub version: String,
}

/// What a catalog write carries.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// `command`.
    pub command: String,
    /// `args`.
    pub args: Vec<String>,
    /// `env`.
    pub env: Vec<String>,
    /// `sha256`.
    pub sha256: String,
    /// `version`.
    pub version: String,
}

#[derive(Default)]
struct Mirror {
    directory: Option<PathBuf>,
    entries: HashMap<String, CatalogEntry>,
}

fn mirror() -> &'static RwLock<Mirror> {
    static MIRROR: OnceLock<RwLock<Mirror>> = OnceLock::new();
    MIRROR.get_or_init(Default::default)
}

/// Sets the directory plugin commands resolve against (`plugin_directory`, or dev mode's
/// `--dev-plugin-dir`). Without one, the catalog refuses registrations.
pub fn set_plugin_directory(dir: Option<PathBuf>) {
    let dir = dir.map(|d| std::fs::canonicalize(&d).unwrap_or(d));
    if let Some(d) = &dir {
        tracing::info!(plugin_directory = %d.display(), "external plugins enabled");
    }
    mirror().write().expect("not poisoned").directory = dir;
}

/// The configured plugin directory.
pub fn plugin_directory() -> Option<PathBuf> {
    mirror().read().expect("not poisoned").directory.clone()
}

/// Whether `name` is a registered external plugin.
pub fn is_registered(name: &str) -> bool {
    mirror()
        .read()
        .expect("not poisoned")
        .entries
        .contains_key(name)
}

/// Loads the stored entries into the process-wide mirror (start-up).
pub async fn load(core: &Core) -> Result<usize> {
    let mut entries = HashMap::new();
    for name in core.list(PREFIX).await? {
        if let Some(entry) = core
            .get_json::<CatalogEntry>(&format!("{PREFIX}{name}"))
            .await?
        {
            entries.insert(name, entry);
        }
    }
    let count = entries.len();
    mirror().write().expect("not poisoned").entries = entries;
    Ok(count)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(invalid(
            "plugin names are 1 to 128 characters of letters, digits, '-', '_' and '.' \
             (not starting with '.')",
        ));
    }
    Ok(())
}

/// Resolves `command` inside `dir`: relative, no `..`, and (after following symbolic links)
/// still inside the directory.
fn resolve(dir: &Path, command: &str) -> std::result::Result<PathBuf, String> {
    let relative = Path::new(command);
    if command.trim().is_empty() {
        return Err("command is required".into());
    }
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "command {command:?} must be a path relative to the plugin directory, without '..'"
        ));
    }
    let path = dir.join(relative);
    let real = std::fs::canonicalize(&path).map_err(|e| {
        format!("plugin command {command:?} not found in the plugin directory: {e}")
    })?;
    if !real.starts_with(dir) {
        return Err(format!(
            "plugin command {command:?} resolves outside the plugin directory"
        ));
    }
    if !real.is_file() {
        return Err(format!("plugin command {command:?} is not a file"));
    }
    Ok(real)
}

/// The hex SHA-256 of a file.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Hashes a file on a blocking thread.
async fn hash(path: PathBuf) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

fn mismatch(name: &str, command: &str, actual: &str, expected: &str) -> String {
    format!(
        "sha256 mismatch for plugin \"{name}\": the SHA-256 of {command} is {actual}, but the \
         catalog entry says {expected}; the binary was not started (register it again with the \
         right sha256 if the change is intended)"
    )
}

/// Validates and stores an entry; running connections of the plugin are closed so their
/// next use starts the new binary.
pub async fn register(core: &Core, name: &str, reg: Registration) -> Result<()> {
    check_name(name)?;
    let dir = plugin_directory().ok_or_else(|| {
        invalid(
            "no plugin_directory is configured: set plugin_directory in the server \
             configuration (or --dev-plugin-dir in dev mode) to register external plugins",
        )
    })?;
    let sha256 = reg.sha256.trim().to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid(
            "sha256 is required: the hex SHA-256 of the plugin binary (64 characters)",
        ));
    }
    for pair in &reg.env {
        if pair.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return Err(invalid("env entries must be KEY=value strings"));
        }
    }
    let path = resolve(&dir, &reg.command).map_err(invalid)?;
    let actual = hash(path)
        .await
        .map_err(|e| invalid(format!("cannot read plugin command {:?}: {e}", reg.command)))?;
    if actual != sha256 {
        return Err(invalid(mismatch(name, &reg.command, &actual, &sha256)));
    }
    let entry = CatalogEntry {
        name: name.to_owned(),
        command: reg.command,
        args: reg.args,
        env: reg.env,
        sha256,
        version: reg.version,
    };
    core.put_json(&format!("{PREFIX}{name}"), &entry).await?;
    mirror()
        .write()
        .expect("not poisoned")
        .entries
        .insert(name.to_owned(), entry);
    core.backends.close_plugin(name).await;
    Ok(())
}

/// Reads an entry.
pub async fn read(core: &Core, name: &str) -> Result<Option<CatalogEntry>> {
    check_name(name)?;
    core.get_json(&format!("{PREFIX}{name}")).await
}

/// Deletes an entry (missing is fine); running connections of the plugin are closed.
pub async fn delete(core: &Core, name: &str) -> Result<()> {
    check_name(name)?;
    core.delete(&format!("{PREFIX}{name}")).await?;
    mirror().write().expect("not poisoned").entries.remove(name);
    core.backends.close_plugin(name).await;
    Ok(())
}

/// Registered names.
pub async fn list(core: &Core) -> Result<Vec<String>> {
    core.list(PREFIX).await
}

/// The descriptor the engine uses for every catalog entry: resolves the entry named by the
/// request's `plugin_name`, checks the binary's hash, starts it.
pub static EXTERNAL: BackendDescriptor = BackendDescriptor {
    plugin_names: &[],
    open: open_external,
};

fn open_external(req: OpenRequest) -> OpenFuture {
    Box::pin(async move {
        let (entry, dir) = {
            let m = mirror().read().expect("not poisoned");
            (
                m.entries.get(&req.plugin_name).cloned(),
                m.directory.clone(),
            )
        };
        let entry = entry.ok_or_else(|| {
            BackendError::InvalidConfig(format!(
                "plugin \"{}\" is not registered in the catalog",
                req.plugin_name
            ))
        })?;
        let dir = dir.ok_or_else(|| {
            BackendError::InvalidConfig(format!(
                "plugin \"{}\" cannot start: no plugin_directory is configured",
                entry.name
            ))
        })?;
        let path = resolve(&dir, &entry.command).map_err(BackendError::InvalidConfig)?;
        let actual = hash(path.clone()).await.map_err(|e| {
            BackendError::InvalidConfig(format!(
                "cannot read plugin command {:?}: {e}",
                entry.command
            ))
        })?;
        if actual != entry.sha256 {
            tracing::error!(plugin = %entry.name, command = %entry.command, %actual, expected = %entry.sha256, "refusing to start a plugin whose binary changed");
            return Err(BackendError::InvalidConfig(mismatch(
                &entry.name,
                &entry.command,
                &actual,
                &entry.sha256,
            )));
        }
        let env = entry
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        external::open(
            PluginCommand {
                name: entry.name.clone(),
                program: path,
                args: entry.args.clone(),
                env,
            },
            req,
        )
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["pg-ext", "dameng-database-plugin", "a.b_c"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "a/b", "..", ".hidden", "a b", "x\u{e9}"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commands_stay_inside_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("plugins");
        std::fs::create_dir(&dir).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        std::fs::write(dir.join("p"), b"#!/bin/sh\n").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/q"), b"x").unwrap();
        std::fs::write(root.path().join("outside"), b"x").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside"), dir.join("link")).unwrap();

        assert_eq!(resolve(&dir, "p").unwrap(), dir.join("p"));
        assert_eq!(resolve(&dir, "./sub/q").unwrap(), dir.join("sub/q"));
        for bad in [
            "",
            "/bin/sh",
            "../outside",
            "sub/../../outside",
            "link",
            "sub",
            "nope",
        ] {
            assert!(resolve(&dir, bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            sha256_file(&dir.join("sub/q")).unwrap(),
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
    }
}
