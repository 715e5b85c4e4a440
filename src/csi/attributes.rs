//! Reading a `MountRequest`: the SecretProviderClass parameters and the Pod's identity.
//!
//! The parameter names follow vault-csi-provider's where they mean the same thing
//! (`roleName`, `vaultAddress`, `vaultKubernetesMountPath`, `vaultCACertPath`, `audience`,
//! `objects` with `objectName`/`secretPath`/`secretKey`/`filePermission`), so a
//! SecretProviderClass written for Vault needs only `provider: dbwarden`. Shorter aliases
//! (`address`, `authMountPath`, `caCertPath`) and an inline `caCert` are accepted too.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The attribute holding the Pod's ServiceAccount tokens (audience -> token).
pub const TOKENS_ATTRIBUTE: &str = "csi.storage.k8s.io/serviceAccount.tokens";
/// The attribute holding the Pod's UID.
pub const POD_UID_ATTRIBUTE: &str = "csi.storage.k8s.io/pod.uid";
const POD_NAME_ATTRIBUTE: &str = "csi.storage.k8s.io/pod.name";
const POD_NAMESPACE_ATTRIBUTE: &str = "csi.storage.k8s.io/pod.namespace";
const SA_NAME_ATTRIBUTE: &str = "csi.storage.k8s.io/serviceAccount.name";

/// Errors in the attributes (answered as `InvalidArgument`).
#[derive(Debug, thiserror::Error)]
pub enum AttributeError {
    /// Not a JSON object of strings.
    #[error("attributes are not a JSON object of strings: {0}")]
    NotJson(String),
    /// A required parameter is missing.
    #[error("missing parameter {0}")]
    Missing(&'static str),
    /// A parameter has a bad value.
    #[error("parameter {name}: {message}")]
    Invalid {
        /// The parameter.
        name: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(name: &str, message: impl Into<String>) -> AttributeError {
    AttributeError::Invalid {
        name: name.to_owned(),
        message: message.into(),
    }
}

/// How the provider logs in for a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// Kubernetes auth with the Pod's ServiceAccount token (the default).
    Kubernetes,
    /// A dbwarden token in the `token` key of the volume's `nodePublishSecretRef` Secret,
    /// for clusters where Kubernetes auth is not configured.
    Token,
}

/// One file to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The object's name: its id in object versions and, by default, its file name.
    pub name: String,
    /// The file, relative to the mount.
    pub file_name: String,
    /// The API path (`database/creds/<role>`).
    pub secret_path: String,
    /// The field written; the whole data as JSON when unset.
    pub secret_key: Option<String>,
    /// File mode, when the object sets one.
    pub mode: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawObject {
    object_name: String,
    secret_path: String,
    #[serde(default)]
    secret_key: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    file_permission: Option<serde_norway::Value>,
    // Accepted for vault-csi-provider compatibility; dbwarden reads with GET only.
    #[serde(default)]
    method: Option<String>,
}

/// Everything a Mount needs.
#[derive(Debug, Clone)]
pub struct MountParams {
    /// The role to log in as.
    pub role: String,
    /// The server, when the class sets it.
    pub address: Option<String>,
    /// The auth mount (default `kubernetes`).
    pub auth_mount: String,
    /// How to log in.
    pub auth_method: AuthMethod,
    /// PEM of the server's CA, inline.
    pub ca_cert: Option<String>,
    /// A PEM file of the server's CA on the node.
    pub ca_cert_path: Option<String>,
    /// The token audience, when the class sets it.
    pub audience: Option<String>,
    /// The files.
    pub objects: Vec<Object>,
    /// The Pod's UID (the cache key).
    pub pod_uid: String,
    /// `namespace/name` of the Pod, for logs.
    pub pod: String,
    /// The ServiceAccount's name, for logs.
    pub service_account: String,
    /// ServiceAccount tokens by audience.
    pub tokens: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct TokenEntry {
    token: String,
}

impl MountParams {
    /// Parses the `attributes` JSON of a MountRequest.
    pub fn parse(attributes: &str) -> Result<MountParams, AttributeError> {
        let map: BTreeMap<String, String> =
            serde_json::from_str(attributes).map_err(|e| AttributeError::NotJson(e.to_string()))?;
        let get = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| map.get(*n))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let role = get(&["roleName"]).ok_or(AttributeError::Missing("roleName"))?;
        let auth_method = match get(&["authMethod"]).as_deref() {
            None | Some("kubernetes") => AuthMethod::Kubernetes,
            Some("token") => AuthMethod::Token,
            Some(other) => {
                return Err(invalid(
                    "authMethod",
                    format!("{other:?} is not kubernetes or token"),
                ));
            }
        };
        let auth_mount = get(&["vaultKubernetesMountPath", "authMountPath"])
            .map(|m| m.trim_matches('/').trim_start_matches("auth/").to_owned())
            .unwrap_or_else(|| "kubernetes".into());
        let objects_text = get(&["objects"]).ok_or(AttributeError::Missing("objects"))?;
        let raw: Vec<RawObject> =
            serde_norway::from_str(&objects_text).map_err(|e| invalid("objects", e.to_string()))?;
        if raw.is_empty() {
            return Err(invalid("objects", "the list is empty"));
        }
        let mut objects = Vec::with_capacity(raw.len());
        let mut seen = std::collections::BTreeSet::new();
        for o in raw {
            if let Some(method) = &o.method
                && !method.eq_ignore_ascii_case("GET")
            {
                return Err(invalid(
                    "objects",
                    format!("{}: only method GET is supported", o.object_name),
                ));
            }
            let file_name = o.file_name.unwrap_or_else(|| o.object_name.clone());
            check_relative(&file_name)?;
            if !seen.insert(file_name.clone()) {
                return Err(invalid(
                    "objects",
                    format!("two objects write {file_name:?}"),
                ));
            }
            let path = o.secret_path.trim_matches('/').to_owned();
            if path.is_empty() {
                return Err(invalid(
                    "objects",
                    format!("{}: empty secretPath", o.object_name),
                ));
            }
            objects.push(Object {
                name: o.object_name,
                file_name,
                secret_path: path,
                secret_key: o.secret_key.filter(|k| !k.is_empty()),
                mode: o.file_permission.map(parse_mode).transpose()?,
            });
        }
        let tokens = match map.get(TOKENS_ATTRIBUTE) {
            Some(text) if !text.trim().is_empty() => {
                let entries: BTreeMap<String, TokenEntry> =
                    serde_json::from_str(text).map_err(|_| {
                        invalid(TOKENS_ATTRIBUTE, "not a JSON map of audience to token")
                    })?;
                entries.into_iter().map(|(a, t)| (a, t.token)).collect()
            }
            _ => BTreeMap::new(),
        };
        let pod_uid =
            get(&[POD_UID_ATTRIBUTE]).ok_or(AttributeError::Missing(POD_UID_ATTRIBUTE))?;
        Ok(MountParams {
            role,
            address: get(&["vaultAddress", "address"]),
            auth_mount,
            auth_method,
            ca_cert: get(&["caCert"]),
            ca_cert_path: get(&["vaultCACertPath", "caCertPath"]),
            audience: get(&["audience"]),
            objects,
            pod_uid,
            pod: format!(
                "{}/{}",
                get(&[POD_NAMESPACE_ATTRIBUTE]).unwrap_or_default(),
                get(&[POD_NAME_ATTRIBUTE]).unwrap_or_default()
            ),
            service_account: get(&[SA_NAME_ATTRIBUTE]).unwrap_or_default(),
            tokens,
        })
    }

    /// The ServiceAccount token to log in with: the class's `audience`, else
    /// `default_audience`, else the only token there is.
    pub fn token_for(&self, default_audience: &str) -> Result<&str, AttributeError> {
        if let Some(audience) = &self.audience {
            return self.tokens.get(audience).map(String::as_str).ok_or_else(|| {
                invalid(
                    TOKENS_ATTRIBUTE,
                    format!("no token for audience {audience:?}: add it to the CSIDriver's tokenRequests"),
                )
            });
        }
        if let Some(token) = self.tokens.get(default_audience) {
            return Ok(token);
        }
        match self.tokens.len() {
            1 => Ok(self
                .tokens
                .values()
                .next()
                .map(String::as_str)
                .unwrap_or_default()),
            0 => Err(invalid(
                TOKENS_ATTRIBUTE,
                "no ServiceAccount token: set tokenRequests on the secrets-store CSIDriver",
            )),
            _ => Err(invalid(
                TOKENS_ATTRIBUTE,
                format!(
                    "several tokens and none for {default_audience:?}: set the audience parameter"
                ),
            )),
        }
    }

    /// What identifies the class's settings (two classes mounted in one Pod are cached
    /// apart; tokens, which change at every call, are left out).
    pub fn settings_key(&self) -> String {
        format!(
            "{}|{:?}|{}|{:?}|{:?}|{:?}",
            self.role, self.address, self.auth_mount, self.auth_method, self.audience, self.objects
        )
    }
}

/// A file name must stay inside the mount: relative, no `..`, no empty segment.
fn check_relative(name: &str) -> Result<(), AttributeError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        return Err(invalid(
            "objects",
            format!("file name {name:?} must be a relative path without \"..\""),
        ));
    }
    Ok(())
}

/// `filePermission`: an octal string (`"0400"`) or a number (YAML reads `0400` as octal).
fn parse_mode(value: serde_norway::Value) -> Result<i32, AttributeError> {
    let mode = match &value {
        serde_norway::Value::Number(n) => n.as_i64(),
        serde_norway::Value::String(s) => i64::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
        _ => None,
    };
    mode.filter(|m| (0..=0o777).contains(m))
        .map(|m| m as i32)
        .ok_or_else(|| {
            invalid(
                "objects",
                "filePermission must be an octal mode such as \"0400\"",
            )
        })
}

/// The file mode the driver asked for (`permission`, decimal), if valid.
pub fn request_mode(permission: &str) -> Option<i32> {
    permission
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|m| (0..=0o777).contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attributes(objects: &str) -> String {
        json!({
            "roleName": "order-service",
            "vaultAddress": "https://dbwarden.dbwarden.svc:8200",
            "objects": objects,
            "csi.storage.k8s.io/pod.name": "order-1",
            "csi.storage.k8s.io/pod.namespace": "shop",
            "csi.storage.k8s.io/pod.uid": "0b7d-uid",
            "csi.storage.k8s.io/serviceAccount.name": "order-service",
            "csi.storage.k8s.io/serviceAccount.tokens": "{\"dbwarden\":{\"token\":\"eyJ.x.y\",\"expirationTimestamp\":\"2030-01-01T00:00:00Z\"}}",
        })
        .to_string()
    }

    const OBJECTS: &str = "- objectName: db-user\n  secretPath: database/creds/order-service\n  secretKey: username\n- objectName: db-pass\n  secretPath: database/creds/order-service\n  secretKey: password\n  filePermission: \"0400\"\n";

    #[test]
    fn vault_style_parameters_parse() {
        let p = MountParams::parse(&attributes(OBJECTS)).unwrap();
        assert_eq!(p.role, "order-service");
        assert_eq!(p.auth_mount, "kubernetes");
        assert_eq!(p.auth_method, AuthMethod::Kubernetes);
        assert_eq!(p.pod, "shop/order-1");
        assert_eq!(p.pod_uid, "0b7d-uid");
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[1].mode, Some(0o400));
        assert_eq!(p.objects[0].file_name, "db-user");
        assert_eq!(p.token_for("dbwarden").unwrap(), "eyJ.x.y");
        assert_eq!(p.token_for("other").unwrap(), "eyJ.x.y", "the only token");
    }

    #[test]
    fn json_objects_and_bad_values() {
        let p = MountParams::parse(&attributes(
            r#"[{"objectName": "creds.json", "secretPath": "/database/creds/app/"}]"#,
        ))
        .unwrap();
        assert_eq!(p.objects[0].secret_path, "database/creds/app");
        assert_eq!(p.objects[0].secret_key, None);
        for (objects, expected) in [
            ("- objectName: ../x\n  secretPath: a/b", "relative"),
            ("- objectName: /etc/x\n  secretPath: a/b", "relative"),
            (
                "- objectName: x\n  secretPath: a/b\n  filePermission: \"9\"",
                "octal",
            ),
            ("- objectName: x\n  secretPath: a/b\n  method: PUT", "GET"),
            ("- objectName: x\n  secretPth: a/b", "secretPth"),
            ("[]", "empty"),
        ] {
            let err = MountParams::parse(&attributes(objects))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{expected:?} not in {err}");
        }
        let err = MountParams::parse("[1]").unwrap_err().to_string();
        assert!(err.contains("JSON object"), "{err}");
    }

    #[test]
    fn audience_selection() {
        let mut p = MountParams::parse(&attributes(OBJECTS)).unwrap();
        p.audience = Some("vault".into());
        let err = p.token_for("dbwarden").unwrap_err().to_string();
        assert!(err.contains("vault") && !err.contains("eyJ"), "{err}");
        p.audience = None;
        p.tokens.insert("vault".into(), "other".into());
        assert_eq!(p.token_for("dbwarden").unwrap(), "eyJ.x.y");
        assert!(p.token_for("nope").is_err());
        assert_eq!(request_mode("420"), Some(0o644));
        assert_eq!(request_mode("x"), None);
    }
}
