//! Vault-compatible ACL policies: parsing (HCL and JSON) and evaluation.
//!
//! The matching rules mirror Vault's `vault/acl.go` so that a policy written
//! for Vault grants exactly the same access here. Parameter constraints,
//! wrapping TTL bounds, MFA and control groups are rejected at parse time
//! rather than silently ignored: accepting them would let an operator believe
//! a restriction is enforced when it is not.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

/// A capability that a policy can grant on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Write to a path that does not exist yet (POST/PUT).
    Create,
    /// Read a path (GET).
    Read,
    /// Write to a path that already exists (POST/PUT).
    Update,
    /// Partially update a path (PATCH).
    Patch,
    /// Delete a path (DELETE).
    Delete,
    /// List keys under a path (LIST).
    List,
    /// Access root-protected paths; checked in addition to the operation's capability.
    Sudo,
    /// Explicitly forbid everything on the path; never granted by a check.
    Deny,
}

impl Capability {
    /// The capability's name as written in policies and returned by `sys/capabilities`.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sudo => "sudo",
            Capability::Deny => "deny",
        }
    }

    fn from_name(name: &str) -> Option<Capability> {
        ALL_CAPABILITIES
            .iter()
            .copied()
            .find(|cap| cap.as_str() == name)
    }

    const fn bit(self) -> u16 {
        match self {
            Capability::Deny => 1,
            Capability::Create => 1 << 1,
            Capability::Read => 1 << 2,
            Capability::Update => 1 << 3,
            Capability::Delete => 1 << 4,
            Capability::List => 1 << 5,
            Capability::Sudo => 1 << 6,
            Capability::Patch => 1 << 7,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Alphabetical, because `sys/capabilities-self` returns sorted names.
const ALL_CAPABILITIES: [Capability; 8] = [
    Capability::Create,
    Capability::Delete,
    Capability::Deny,
    Capability::List,
    Capability::Patch,
    Capability::Read,
    Capability::Sudo,
    Capability::Update,
];

const DENY: u16 = Capability::Deny.bit();

/// Errors from parsing a policy document or validating its name.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The document is not valid HCL or JSON.
    #[error("failed to parse policy: line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected or found.
        message: String,
    },
    /// The document parses but its structure is not a policy.
    #[error("failed to parse policy: {0}")]
    Malformed(String),
    /// A top-level key other than `path` or `name`.
    #[error("unknown top-level key \"{key}\"")]
    UnknownTopLevelKey {
        /// The offending key.
        key: String,
    },
    /// A key inside a `path` block that Vault does not define.
    #[error("unknown key \"{key}\" in path \"{path}\"")]
    UnknownKey {
        /// The offending key.
        key: String,
        /// The path block containing it.
        path: String,
    },
    /// A Vault key that dbwarden deliberately does not enforce.
    #[error("{key} is not supported (path \"{path}\")")]
    Unsupported {
        /// The unsupported key, e.g. `allowed_parameters`.
        key: String,
        /// The path block containing it.
        path: String,
    },
    /// A key has a value of the wrong shape.
    #[error("invalid value for \"{key}\" in path \"{path}\": expected {expected}")]
    InvalidValue {
        /// The key whose value is wrong.
        key: String,
        /// The path block containing it.
        path: String,
        /// Description of the accepted shape.
        expected: &'static str,
    },
    /// A capability name that Vault does not define.
    #[error("invalid capability \"{capability}\" for path \"{path}\"")]
    InvalidCapability {
        /// The unknown capability name.
        capability: String,
        /// The path block containing it.
        path: String,
    },
    /// A legacy `policy = "..."` value other than deny/read/write/sudo.
    #[error("invalid policy \"{value}\" for path \"{path}\"")]
    InvalidLegacyPolicy {
        /// The unknown legacy value.
        value: String,
        /// The path block containing it.
        path: String,
    },
    /// A path pattern that cannot be matched as written.
    #[error("invalid path \"{path}\": {reason}")]
    InvalidPath {
        /// The pattern as written.
        path: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The policy name is empty.
    #[error("policy name missing")]
    MissingName,
    /// The built-in `root` policy cannot be written; map to HTTP 400.
    #[error("cannot update root policy")]
    RootPolicy,
}

/// Built-in policy attached to every non-root token unless opted out.
///
/// It is Vault's default policy reduced to endpoints dbwarden serves. Vault's
/// copy also grants `cubbyhole/*`, `sys/wrapping/*`, `sys/tools/hash`,
/// `sys/internal/ui/resultant-acl`, the legacy `sys/renew`, identity lookups
/// (templated paths) and enterprise control-group/MFA paths; those are left
/// out because dbwarden has no such endpoints (and no templating), and a
/// grant on a path that does not exist only invites confusion.
pub const DEFAULT_POLICY: &str = r#"# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to renew a lease via lease_id in the request body
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to look up and unwrap response-wrapping tokens it was given
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow a token to check the state of a control group request (approvers still need
# a policy granting sys/control-group/authorize)
path "sys/control-group/request" {
    capabilities = ["update", "list"]
}
"#;

/// Name under which [`DEFAULT_POLICY`] is stored.
pub const DEFAULT_POLICY_NAME: &str = "default";

/// One `path` block of a policy.
///
/// Kept private so that future per-rule data (conditions, parameter
/// constraints) can be added without breaking callers; the merge in
/// [`Acl::new`] is the one place that must learn how to combine them.
#[derive(Debug, Clone)]
struct PathRule {
    /// Pattern as written, minus a leading `/`.
    pattern: String,
    /// Capability bitmap; exactly [`DENY`] when the block denies.
    caps: u16,
    /// dbwarden's extension: when the grant applies (source networks, time windows).
    conditions: Option<Arc<Conditions>>,
    /// dbwarden's extension: approvals required before the request runs.
    control_group: Option<Arc<ControlGroup>>,
}

/// Conditions under which a path rule grants anything (dbwarden's extension to Vault's HCL).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    /// The caller's address must fall in one of these networks (if any are given).
    pub networks: Vec<ipnet::IpNet>,
    /// The request must fall in one of these windows (if any are given).
    pub windows: Vec<TimeWindow>,
}

/// Days and hours in a named time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeWindow {
    /// Allowed weekdays (empty: every day).
    pub days: Vec<chrono::Weekday>,
    /// Start, minutes after midnight, inclusive.
    pub start_minute: u32,
    /// End, minutes after midnight, exclusive; smaller than the start for windows
    /// that cross midnight (`22:00-06:00`, counted on the day they start).
    pub end_minute: u32,
    /// The zone the days and hours are read in.
    pub zone: chrono_tz::Tz,
}

/// Approvals a request needs before it runs (dbwarden's `control_group` block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlGroup {
    /// Distinct approvers needed.
    pub approvals: u32,
    /// Tokens holding any of these policies may approve.
    pub approver_policies: Vec<String>,
    /// Tokens with any of these display names (`userpass-alice`) may approve.
    pub approver_users: Vec<String>,
    /// How long a pending request waits for approval, seconds.
    pub ttl_seconds: i64,
}

/// What a policy decision is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    /// The caller's address, if known.
    pub remote: Option<std::net::IpAddr>,
    /// The request time.
    pub now: chrono::DateTime<chrono::Utc>,
}

impl RequestContext {
    /// A context for now, with the caller's address.
    pub fn now(remote: Option<std::net::IpAddr>) -> Self {
        RequestContext {
            remote,
            now: chrono::Utc::now(),
        }
    }
}

impl TimeWindow {
    fn contains(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        let local = now.with_timezone(&self.zone);
        let minute = local.hour() * 60 + local.minute();
        let (day, inside) = if self.start_minute <= self.end_minute {
            (
                local.weekday(),
                minute >= self.start_minute && minute < self.end_minute,
            )
        } else if minute >= self.start_minute {
            (local.weekday(), true)
        } else {
            // After midnight in a window that started the day before.
            (local.weekday().pred(), minute < self.end_minute)
        };
        inside && (self.days.is_empty() || self.days.contains(&day))
    }
}

impl Conditions {
    /// Which condition fails for this request, if any (named, never with its values).
    fn failure(&self, ctx: &RequestContext) -> Option<&'static str> {
        if !self.networks.is_empty()
            && !ctx
                .remote
                .is_some_and(|ip| self.networks.iter().any(|n| n.contains(&ip)))
        {
            return Some("source address not allowed");
        }
        if !self.windows.is_empty() && !self.windows.iter().any(|w| w.contains(ctx.now)) {
            return Some("outside the allowed time window");
        }
        None
    }
}

/// A parsed ACL policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Lowercased policy name.
    pub name: String,
    /// The source text exactly as submitted, for `sys/policy` reads.
    pub raw: String,
    rules: Vec<PathRule>,
}

impl Policy {
    /// Parses a policy from HCL or from Vault's JSON form (`{"path": {"x": {"capabilities": ["read"]}}}`).
    ///
    /// The name is lowercased like Vault does; `root` is refused with
    /// [`PolicyError::RootPolicy`].
    pub fn parse(name: &str, source: &str) -> Result<Policy, PolicyError> {
        let name = name.to_lowercase();
        if name.is_empty() {
            return Err(PolicyError::MissingName);
        }
        if name == "root" {
            return Err(PolicyError::RootPolicy);
        }
        // An HCL body can never start with `{`, so this cannot misroute HCL.
        let rules = if source.trim_start().starts_with('{') {
            parse_json(source)?
        } else {
            parse_hcl(source)?
        };
        Ok(Policy {
            name,
            raw: source.to_owned(),
            rules,
        })
    }
}

fn parse_json(source: &str) -> Result<Vec<PathRule>, PolicyError> {
    let doc: Value = serde_json::from_str(source).map_err(|err| {
        let full = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        PolicyError::Syntax {
            line: err.line(),
            column: err.column(),
            message: full.strip_suffix(&suffix).unwrap_or(&full).to_owned(),
        }
    })?;
    let Value::Object(top) = doc else {
        return Err(PolicyError::Malformed(
            "top level must be an object".to_owned(),
        ));
    };
    let mut rules = Vec::new();
    for (key, value) in top {
        match key.as_str() {
            "name" => {}
            "path" => collect_path_value(&value, &mut rules)?,
            _ => return Err(PolicyError::UnknownTopLevelKey { key }),
        }
    }
    Ok(rules)
}

/// Accepts both `{"p": {...}}` and HCL1's list form `[{"p": {...}}, ...]`,
/// with each body itself either an object or a list of objects.
fn collect_path_value(value: &Value, rules: &mut Vec<PathRule>) -> Result<(), PolicyError> {
    match value {
        Value::Object(paths) => {
            for (pattern, body) in paths {
                match body {
                    Value::Object(fields) => rules.push(parse_rule(pattern, fields_of(fields))?),
                    Value::Array(items) => {
                        for item in items {
                            let Value::Object(fields) = item else {
                                return Err(body_not_object(pattern));
                            };
                            rules.push(parse_rule(pattern, fields_of(fields))?);
                        }
                    }
                    _ => return Err(body_not_object(pattern)),
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| collect_path_value(item, rules)),
        _ => Err(PolicyError::Malformed(
            "\"path\" must be an object mapping paths to rules".to_owned(),
        )),
    }
}

fn body_not_object(pattern: &str) -> PolicyError {
    PolicyError::Malformed(format!("path \"{pattern}\" must be an object"))
}

fn fields_of(map: &Map<String, Value>) -> Vec<(String, Value)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Deepest nesting of brackets (`[`, `{`, `(`) accepted in HCL policy text. The HCL parser
/// takes time exponential in the nesting of some unclosed expressions (a 1 KB policy found
/// by the `acl_policy_hcl` fuzz target ran for minutes), and real policies nest at most
/// four levels (`path { allowed_time_windows = [{ days = [...] }] }`).
pub(crate) const MAX_HCL_NESTING: usize = 8;

/// The deepest bracket nesting in `text`, if it exceeds [`MAX_HCL_NESTING`]. Brackets are
/// counted everywhere, strings included, since `${...}` inside a string is an expression.
pub(crate) fn hcl_nesting_exceeded(text: &str) -> Option<usize> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for c in text.chars() {
        match c {
            '[' | '{' | '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ']' | '}' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest > MAX_HCL_NESTING).then_some(deepest)
}

fn parse_hcl(source: &str) -> Result<Vec<PathRule>, PolicyError> {
    if let Some(depth) = hcl_nesting_exceeded(source) {
        return Err(PolicyError::Malformed(format!(
            "brackets nest {depth} levels deep; at most {MAX_HCL_NESTING} are allowed"
        )));
    }
    let body = hcl::parse(source).map_err(|err| match err {
        hcl::Error::Parse(parse) => PolicyError::Syntax {
            line: parse.location().line(),
            column: parse.location().column(),
            message: parse.message().to_owned(),
        },
        other => PolicyError::Malformed(other.to_string()),
    })?;
    let mut rules = Vec::new();
    for structure in body {
        match structure {
            hcl::Structure::Attribute(attr) => match attr.key() {
                "name" => {}
                "path" => {
                    let value = hcl_to_json(attr.expr()).ok_or_else(|| {
                        PolicyError::Malformed(
                            "\"path\" must be an object mapping paths to rules".to_owned(),
                        )
                    })?;
                    collect_path_value(&value, &mut rules)?;
                }
                other => {
                    return Err(PolicyError::UnknownTopLevelKey {
                        key: other.to_owned(),
                    });
                }
            },
            hcl::Structure::Block(block) => {
                if block.identifier() != "path" {
                    return Err(PolicyError::UnknownTopLevelKey {
                        key: block.identifier().to_owned(),
                    });
                }
                let [label] = block.labels() else {
                    return Err(PolicyError::Malformed(
                        "a path block needs exactly one label, e.g. path \"secret/*\" { ... }"
                            .to_owned(),
                    ));
                };
                let pattern = label.as_str();
                let mut fields = Vec::new();
                for inner in block.body() {
                    match inner {
                        hcl::Structure::Attribute(attr) => {
                            let value = hcl_to_json(attr.expr()).ok_or_else(|| {
                                PolicyError::InvalidValue {
                                    key: attr.key().to_owned(),
                                    path: pattern.to_owned(),
                                    expected: if attr.key() == "capabilities" {
                                        "a list of strings"
                                    } else {
                                        "a literal value (no expressions or interpolation)"
                                    },
                                }
                            })?;
                            fields.push((attr.key().to_owned(), value));
                        }
                        // Nested blocks (control_group) become objects of their literal
                        // attributes; anything deeper is refused by the key checks.
                        hcl::Structure::Block(nested) => {
                            let mut object = Map::new();
                            for attr in nested.body().attributes() {
                                let value = hcl_to_json(attr.expr()).ok_or_else(|| {
                                    invalid_value(
                                        nested.identifier(),
                                        pattern,
                                        "a literal value (no expressions or interpolation)",
                                    )
                                })?;
                                object.insert(attr.key().to_owned(), value);
                            }
                            fields.push((nested.identifier().to_owned(), Value::Object(object)));
                        }
                    }
                }
                rules.push(parse_rule(pattern, fields)?);
            }
        }
    }
    Ok(rules)
}

/// Converts literal HCL values only; policies are data, so anything that
/// would need evaluation is refused instead of guessed at.
fn hcl_to_json(expr: &hcl::Expression) -> Option<Value> {
    Some(match expr {
        hcl::Expression::Null => Value::Null,
        hcl::Expression::Bool(b) => Value::Bool(*b),
        hcl::Expression::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64()?)
            }
        }
        hcl::Expression::String(s) => Value::String(s.clone()),
        hcl::Expression::Array(items) => {
            Value::Array(items.iter().map(hcl_to_json).collect::<Option<_>>()?)
        }
        hcl::Expression::Object(obj) => {
            let mut map = Map::new();
            for (key, value) in obj {
                let key = match key {
                    hcl::ObjectKey::Identifier(ident) => ident.as_str().to_owned(),
                    hcl::ObjectKey::Expression(hcl::Expression::String(s)) => s.clone(),
                    _ => return None,
                };
                map.insert(key, hcl_to_json(value)?);
            }
            Value::Object(map)
        }
        hcl::Expression::Parenthesis(inner) => hcl_to_json(inner)?,
        _ => return None,
    })
}

/// Keys Vault defines that dbwarden refuses rather than ignores.
const UNSUPPORTED_KEYS: [&str; 7] = [
    "allowed_parameters",
    "denied_parameters",
    "required_parameters",
    "min_wrapping_ttl",
    "max_wrapping_ttl",
    "mfa_methods",
    "subscribe_event_types",
];

fn invalid_value(key: &str, path: &str, expected: &'static str) -> PolicyError {
    PolicyError::InvalidValue {
        key: key.to_owned(),
        path: path.to_owned(),
        expected,
    }
}

fn string_list(value: &Value, key: &str, path: &str) -> Result<Vec<String>, PolicyError> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| list_expected(key, path))
            })
            .collect(),
        Value::String(s) => Ok(vec![s.clone()]),
        _ => Err(list_expected(key, path)),
    }
}

fn parse_networks(value: &Value, path: &str) -> Result<Vec<ipnet::IpNet>, PolicyError> {
    string_list(value, "allowed_source_networks", path)?
        .iter()
        .map(|n| {
            super::cidr::parse(n).map_err(|_| {
                invalid_value(
                    "allowed_source_networks",
                    path,
                    "CIDR networks such as \"10.0.0.0/8\"",
                )
            })
        })
        .collect()
}

fn parse_minute(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

fn parse_windows(value: &Value, path: &str) -> Result<Vec<TimeWindow>, PolicyError> {
    const KEY: &str = "allowed_time_windows";
    let items = match value {
        Value::Array(items) => items.clone(),
        Value::Object(_) => vec![value.clone()],
        _ => {
            return Err(invalid_value(
                KEY,
                path,
                "a list of {days, hours, time_zone} objects",
            ));
        }
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(obj) = item else {
                return Err(invalid_value(
                    KEY,
                    path,
                    "a list of {days, hours, time_zone} objects",
                ));
            };
            if let Some(k) = obj
                .keys()
                .find(|k| !matches!(k.as_str(), "days" | "hours" | "time_zone"))
            {
                return Err(PolicyError::UnknownKey {
                    key: format!("{KEY}.{k}"),
                    path: path.to_owned(),
                });
            }
            let days = match obj.get("days") {
                None => Vec::new(),
                Some(v) => string_list(v, KEY, path)?
                    .iter()
                    .map(|d| {
                        d.parse::<chrono::Weekday>().map_err(|_| {
                            invalid_value(KEY, path, "days such as \"mon\" or \"monday\"")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let hours = obj
                .get("hours")
                .and_then(Value::as_str)
                .unwrap_or("00:00-24:00");
            let (start, end) = hours
                .split_once('-')
                .and_then(|(a, b)| Some((parse_minute(a)?, parse_minute(b)?)))
                .ok_or_else(|| invalid_value(KEY, path, "hours such as \"09:00-18:00\""))?;
            let zone = obj
                .get("time_zone")
                .and_then(Value::as_str)
                .unwrap_or("UTC");
            let zone = zone.parse::<chrono_tz::Tz>().map_err(|_| {
                invalid_value(KEY, path, "an IANA time zone such as \"Asia/Shanghai\"")
            })?;
            Ok(TimeWindow {
                days,
                start_minute: start,
                end_minute: end,
                zone,
            })
        })
        .collect()
}

fn parse_control_group(value: &Value, path: &str) -> Result<ControlGroup, PolicyError> {
    const KEY: &str = "control_group";
    let Value::Object(obj) = value else {
        return Err(invalid_value(
            KEY,
            path,
            "a block with approvals and approver_policies or approver_users",
        ));
    };
    if let Some(k) = obj.keys().find(|k| {
        !matches!(
            k.as_str(),
            "approvals" | "approver_policies" | "approver_users" | "ttl"
        )
    }) {
        return Err(PolicyError::UnknownKey {
            key: format!("{KEY}.{k}"),
            path: path.to_owned(),
        });
    }
    let approvals = obj.get("approvals").and_then(Value::as_u64).unwrap_or(1);
    let approvals = u32::try_from(approvals)
        .ok()
        .filter(|a| (1..=100).contains(a))
        .ok_or_else(|| invalid_value(KEY, path, "approvals between 1 and 100"))?;
    let list = |k: &str| -> Result<Vec<String>, PolicyError> {
        obj.get(k)
            .map_or(Ok(Vec::new()), |v| string_list(v, KEY, path))
    };
    let approver_policies = list("approver_policies")?;
    let approver_users = list("approver_users")?;
    if approver_policies.is_empty() && approver_users.is_empty() {
        return Err(invalid_value(
            KEY,
            path,
            "approver_policies or approver_users",
        ));
    }
    let ttl_seconds = match obj.get("ttl") {
        None => 24 * 3600,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => humantime::parse_duration(s).map_or(0, |d| d.as_secs() as i64),
        Some(_) => 0,
    };
    if ttl_seconds <= 0 {
        return Err(invalid_value(KEY, path, "a positive ttl such as \"1h\""));
    }
    Ok(ControlGroup {
        approvals,
        approver_policies,
        approver_users,
        ttl_seconds,
    })
}

fn parse_rule(raw_pattern: &str, fields: Vec<(String, Value)>) -> Result<PathRule, PolicyError> {
    let pattern = raw_pattern.strip_prefix('/').unwrap_or(raw_pattern);
    let path = || raw_pattern.to_owned();
    if pattern.contains("+*") {
        return Err(PolicyError::InvalidPath {
            path: path(),
            reason: "invalid use of wildcards ('+*' is forbidden)",
        });
    }
    if pattern.contains("{{") {
        return Err(PolicyError::InvalidPath {
            path: path(),
            reason: "templated policy paths are not supported",
        });
    }

    let mut caps: u16 = 0;
    let mut denied = false;
    let mut conditions = Conditions::default();
    let mut control_group = None;
    for (key, value) in fields {
        match key.as_str() {
            "comment" => {}
            "allowed_source_networks" => conditions.networks = parse_networks(&value, raw_pattern)?,
            "allowed_time_windows" => conditions.windows = parse_windows(&value, raw_pattern)?,
            "control_group" => {
                control_group = Some(Arc::new(parse_control_group(&value, raw_pattern)?))
            }
            "capabilities" => {
                let Value::Array(items) = &value else {
                    return Err(list_expected(&key, raw_pattern));
                };
                for item in items {
                    let Value::String(name) = item else {
                        return Err(list_expected(&key, raw_pattern));
                    };
                    match Capability::from_name(name) {
                        Some(Capability::Deny) => denied = true,
                        Some(cap) => caps |= cap.bit(),
                        None => {
                            return Err(PolicyError::InvalidCapability {
                                capability: name.clone(),
                                path: path(),
                            });
                        }
                    }
                }
            }
            // Legacy pre-capabilities syntax; Vault still accepts it, so policies
            // copied from old deployments keep working.
            "policy" => {
                let Value::String(legacy) = &value else {
                    return Err(PolicyError::InvalidValue {
                        key,
                        path: path(),
                        expected: "a string",
                    });
                };
                let read = Capability::Read.bit() | Capability::List.bit();
                let write = read
                    | Capability::Create.bit()
                    | Capability::Update.bit()
                    | Capability::Delete.bit();
                match legacy.as_str() {
                    "deny" => denied = true,
                    "read" => caps |= read,
                    "write" => caps |= write,
                    "sudo" => caps |= write | Capability::Sudo.bit(),
                    _ => {
                        return Err(PolicyError::InvalidLegacyPolicy {
                            value: legacy.clone(),
                            path: path(),
                        });
                    }
                }
            }
            k if UNSUPPORTED_KEYS.contains(&k) => {
                return Err(PolicyError::Unsupported { key, path: path() });
            }
            _ => return Err(PolicyError::UnknownKey { key, path: path() }),
        }
    }
    let conditional = !conditions.networks.is_empty() || !conditions.windows.is_empty();
    if denied && (conditional || control_group.is_some()) {
        // A conditional deny would silently grant outside its conditions; refuse the ambiguity.
        return Err(invalid_value(
            "capabilities",
            raw_pattern,
            "no conditions or control_group on a deny rule",
        ));
    }
    Ok(PathRule {
        pattern: pattern.to_owned(),
        caps: if denied { DENY } else { caps },
        conditions: conditional.then(|| Arc::new(conditions)),
        control_group,
    })
}

fn list_expected(key: &str, path: &str) -> PolicyError {
    PolicyError::InvalidValue {
        key: key.to_owned(),
        path: path.to_owned(),
        expected: "a list of strings",
    }
}

/// One policy's contribution to a pattern.
#[derive(Debug, Clone)]
struct Grant {
    policy: String,
    caps: u16,
    conditions: Option<Arc<Conditions>>,
    control_group: Option<Arc<ControlGroup>>,
}

/// Merged capabilities of every rule sharing one pattern string.
#[derive(Debug, Clone, Default)]
struct Permissions {
    /// Union of all grants (conditions ignored): what `capabilities()` reports.
    caps: u16,
    /// Each contributing rule, so a decision can evaluate conditions per grant and name
    /// exactly the policies granting the checked capability.
    grants: Vec<Grant>,
}

impl Permissions {
    fn merge(&mut self, policy: &str, rule: &PathRule) {
        // Deny is sticky: once any policy denies this pattern, other grants
        // on the same pattern cannot revive it.
        self.caps = if (self.caps | rule.caps) & DENY != 0 {
            DENY
        } else {
            self.caps | rule.caps
        };
        self.grants.push(Grant {
            policy: policy.to_owned(),
            caps: rule.caps,
            conditions: rule.conditions.clone(),
            control_group: rule.control_group.clone(),
        });
    }

    /// Decides one capability: some grant must carry it and meet its conditions.
    fn decide(&self, bit: u16, ctx: &RequestContext) -> Decision {
        if self.caps == DENY {
            return Decision::denied();
        }
        let mut failed = None;
        let mut granting: Vec<&Grant> = Vec::new();
        let mut sudo = false;
        for grant in &self.grants {
            let failure = grant.conditions.as_ref().and_then(|c| c.failure(ctx));
            if failure.is_none() && grant.caps & Capability::Sudo.bit() != 0 {
                sudo = true;
            }
            if grant.caps & bit == 0 {
                continue;
            }
            match failure {
                None => granting.push(grant),
                Some(reason) => failed = failed.or(Some(reason)),
            }
        }
        if granting.is_empty() {
            return Decision {
                failed_condition: failed,
                sudo,
                ..Decision::denied()
            };
        }
        let mut policies: Vec<String> = granting.iter().map(|g| g.policy.clone()).collect();
        policies.dedup();
        // One grant without a control group is enough to skip approvals.
        let control_group = if granting.iter().any(|g| g.control_group.is_none()) {
            None
        } else {
            granting[0].control_group.clone()
        };
        Decision {
            allowed: true,
            sudo,
            granting_policies: policies,
            failed_condition: None,
            control_group,
        }
    }
}

/// A pattern with `+` segments, with or without a trailing `*`.
#[derive(Debug, Clone)]
struct SegmentRule {
    /// Pattern minus the trailing `*`.
    body: String,
    is_prefix: bool,
    /// Byte offset of the first `+`; Vault's primary specificity key.
    first_wildcard: usize,
    perms: Permissions,
}

/// Ranking of a non-exact match; the greatest wins, as in Vault's `CheckAllowedFromNonExactPaths`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity<'a> {
    first_wildcard: usize,
    not_prefix: bool,
    fewer_wildcards: std::cmp::Reverse<usize>,
    len: usize,
    body: &'a str,
}

/// The set of policies of one token, compiled for fast checks.
#[derive(Debug, Clone)]
pub struct Acl {
    root: bool,
    exact: HashMap<String, Permissions>,
    /// Keyed by the pattern minus its trailing `*`.
    prefix: HashMap<String, Permissions>,
    segment: Vec<SegmentRule>,
}

/// Outcome of checking one capability on one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the capability is granted.
    pub allowed: bool,
    /// Whether the winning rule grants `sudo`; callers require it for root-protected paths.
    pub sudo: bool,
    /// Policies that grant the checked capability on the winning rule (for audit `policy_results`).
    pub granting_policies: Vec<String>,
    /// When only conditions stood in the way: which one failed (never its values).
    pub failed_condition: Option<&'static str>,
    /// Approvals the request needs before it runs, if the granting rule asks for them.
    pub control_group: Option<Arc<ControlGroup>>,
}

impl Decision {
    fn denied() -> Decision {
        Decision {
            allowed: false,
            sudo: false,
            granting_policies: Vec::new(),
            failed_condition: None,
            control_group: None,
        }
    }
}

impl Acl {
    /// Compiles policies into one ACL, merging rules with identical patterns across policies.
    ///
    /// A policy named `root` gets no special treatment here; use [`Acl::root`].
    pub fn new(policies: &[Policy]) -> Acl {
        let mut exact: HashMap<String, Permissions> = HashMap::new();
        let mut prefix: HashMap<String, Permissions> = HashMap::new();
        let mut segment: HashMap<String, Permissions> = HashMap::new();
        for policy in policies {
            for rule in &policy.rules {
                let p = rule.pattern.as_str();
                // Same classification as Vault: only these spellings make a
                // pattern segment-wildcarded, and then `*` is kept in the key.
                let has_segment_wildcards = p == "+" || p.contains("/+") || p.starts_with("+/");
                let slot = if has_segment_wildcards {
                    segment.entry(p.to_owned())
                } else if let Some(stripped) = p.strip_suffix('*') {
                    prefix.entry(stripped.to_owned())
                } else {
                    exact.entry(p.to_owned())
                };
                slot.or_default().merge(&policy.name, rule);
            }
        }
        let segment = segment
            .into_iter()
            .map(|(pattern, perms)| {
                let (body, is_prefix) = match pattern.strip_suffix('*') {
                    Some(body) => (body.to_owned(), true),
                    None => (pattern.clone(), false),
                };
                SegmentRule {
                    first_wildcard: pattern.find('+').unwrap_or(0),
                    body,
                    is_prefix,
                    perms,
                }
            })
            .collect();
        Acl {
            root: false,
            exact,
            prefix,
            segment,
        }
    }

    /// The ACL of a root token: everything allowed, including `sudo`.
    pub fn root() -> Acl {
        Acl {
            root: true,
            exact: HashMap::new(),
            prefix: HashMap::new(),
            segment: Vec::new(),
        }
    }

    /// Checks one capability on a request path.
    ///
    /// `path` is the API path without `/v1/` and without a leading slash, e.g.
    /// `database/creds/ro`. For `List`, pass the path with a trailing slash,
    /// as Vault's HTTP layer does for LIST requests (`LIST /v1/foo` → `foo/`);
    /// like Vault, rules written for `foo` are then considered as well. For
    /// other capabilities `foo/` and `foo` are distinct paths. Asking for
    /// `Sudo` reports whether the winning rule grants sudo; `Deny` is never
    /// granted.
    pub fn allowed(&self, path: &str, cap: Capability) -> Decision {
        self.allowed_in(path, cap, &RequestContext::now(None))
    }

    /// [`Acl::allowed`], evaluating rule conditions against the request's address and time.
    pub fn allowed_in(&self, path: &str, cap: Capability, ctx: &RequestContext) -> Decision {
        if self.root {
            let allowed = cap != Capability::Deny;
            return Decision {
                allowed,
                sudo: true,
                granting_policies: if allowed {
                    vec!["root".to_owned()]
                } else {
                    Vec::new()
                },
                failed_condition: None,
                control_group: None,
            };
        }
        if cap == Capability::Deny {
            return Decision::denied();
        }
        let Some(perms) = self.lookup(path, cap == Capability::List) else {
            return Decision::denied();
        };
        perms.decide(cap.bit(), ctx)
    }

    /// Capability names on `path` as `sys/capabilities-self` reports them, sorted.
    ///
    /// Returns `["deny"]` when nothing is granted and `["root"]` for a root
    /// token. Lookup uses the list fallback, exactly like Vault.
    pub fn capabilities(&self, path: &str) -> Vec<&'static str> {
        if self.root {
            return vec!["root"];
        }
        let caps = self.lookup(path, true).map_or(0, |p| p.caps);
        if caps == 0 || caps & DENY != 0 {
            return vec![Capability::Deny.as_str()];
        }
        ALL_CAPABILITIES
            .iter()
            .filter(|cap| caps & cap.bit() != 0)
            .map(|cap| cap.as_str())
            .collect()
    }

    /// Finds the single winning rule, following the order of Vault's `AllowOperation`.
    fn lookup(&self, path: &str, list: bool) -> Option<&Permissions> {
        let path = path.trim_start_matches('/');
        if let Some(perms) = self.exact.get(path) {
            return Some(perms);
        }
        let trimmed = path.strip_suffix('/');
        if list {
            if let Some(perms) = self.exact.get(trimmed.unwrap_or(path)) {
                return Some(perms);
            }
            // Vault tries globs against the slash-less form first so that
            // `foo*`-style rules govern listing `foo/`.
            if let Some(perms) = trimmed.and_then(|t| self.non_exact(t)) {
                return Some(perms);
            }
        }
        self.non_exact(path)
    }

    fn non_exact(&self, path: &str) -> Option<&Permissions> {
        let mut best = None;
        for (prefix, perms) in &self.prefix {
            if path.starts_with(prefix.as_str()) {
                keep_best(
                    &mut best,
                    Specificity {
                        first_wildcard: prefix.len(),
                        not_prefix: false,
                        fewer_wildcards: std::cmp::Reverse(0),
                        len: prefix.len(),
                        body: prefix,
                    },
                    perms,
                );
            }
        }
        for rule in &self.segment {
            if let Some(wildcards) = segment_match(rule, path) {
                keep_best(
                    &mut best,
                    Specificity {
                        first_wildcard: rule.first_wildcard,
                        not_prefix: !rule.is_prefix,
                        fewer_wildcards: std::cmp::Reverse(wildcards),
                        len: rule.body.len(),
                        body: &rule.body,
                    },
                    &rule.perms,
                );
            }
        }
        best.map(|(_, perms)| perms)
    }
}

fn keep_best<'a>(
    best: &mut Option<(Specificity<'a>, &'a Permissions)>,
    spec: Specificity<'a>,
    perms: &'a Permissions,
) {
    if best.as_ref().is_none_or(|(current, _)| spec > *current) {
        *best = Some((spec, perms));
    }
}

/// Returns the number of `+` segments used if `rule` matches `path`.
fn segment_match(rule: &SegmentRule, path: &str) -> Option<usize> {
    let pattern: Vec<&str> = rule.body.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < pattern.len() || (!rule.is_prefix && parts.len() != pattern.len()) {
        return None;
    }
    let last = pattern.len() - 1;
    let mut wildcards = 0;
    for (i, (want, got)) in pattern.iter().zip(&parts).enumerate() {
        if *want == "+" {
            wildcards += 1;
        } else if want != got && !(rule.is_prefix && i == last && got.starts_with(want)) {
            return None;
        }
    }
    Some(wildcards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability::*;

    fn policy(name: &str, src: &str) -> Policy {
        Policy::parse(name, src).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn acl(srcs: &[&str]) -> Acl {
        let policies: Vec<Policy> = srcs
            .iter()
            .enumerate()
            .map(|(i, s)| policy(&format!("p{i}"), s))
            .collect();
        Acl::new(&policies)
    }

    fn can(acl: &Acl, path: &str, cap: Capability) -> bool {
        acl.allowed(path, cap).allowed
    }

    #[test]
    fn brief_example_single_exact_rule() {
        let a = acl(&[r#"path "database/creds/ro" { capabilities = ["read"] }"#]);
        assert!(can(&a, "database/creds/ro", Read));
        assert!(!can(&a, "database/creds/ro", Update));
        assert!(!can(&a, "database/creds/rw", Read));
        assert!(!can(&a, "database/config/x", Update));
        assert!(!can(&a, "sys/mounts", Read));
        assert!(!can(&a, "sys/leases/renew", Update));
        // Exact rules do not cover children or the list form of other capabilities.
        assert!(!can(&a, "database/creds/ro/x", Read));
        assert!(!can(&a, "database/creds/ro/", Read));
    }

    #[test]
    fn decision_reports_granting_policy() {
        let a = acl(&[r#"path "database/creds/ro" { capabilities = ["read"] }"#]);
        assert_eq!(
            a.allowed("database/creds/ro", Read),
            Decision {
                allowed: true,
                sudo: false,
                granting_policies: vec!["p0".into()],
                failed_condition: None,
                control_group: None,
            }
        );
        assert_eq!(a.allowed("database/creds/rw", Read), Decision::denied());
    }

    #[test]
    fn leading_slash_is_ignored_in_patterns_and_paths() {
        let a = acl(&[r#"path "/secret/a" { capabilities = ["read"] }"#]);
        assert!(can(&a, "secret/a", Read));
        assert!(can(&a, "/secret/a", Read));
    }

    #[test]
    fn exact_beats_glob() {
        let a = acl(&[r#"
            path "secret/*" { capabilities = ["read", "update"] }
            path "secret/special" { capabilities = ["list"] }
        "#]);
        assert!(can(&a, "secret/other", Update));
        // Capabilities come from the single winning rule, not a union.
        assert!(!can(&a, "secret/special", Read));
        assert_eq!(a.capabilities("secret/special"), vec!["list"]);
    }

    #[test]
    fn longer_prefix_wins_without_union() {
        let a = acl(&[r#"
            path "secret/*" { capabilities = ["read"] }
            path "secret/team/*" { capabilities = ["update"] }
        "#]);
        assert!(can(&a, "secret/x", Read));
        assert!(can(&a, "secret/team/x", Update));
        assert!(!can(&a, "secret/team/x", Read));
        // A glob is a plain string prefix, not segment-aware.
        assert!(can(&a, "secret/teamwork", Read));
        assert!(!can(&a, "secret/teamwork", Update));
    }

    #[test]
    fn glob_inside_segment_is_string_prefix() {
        let a = acl(&[r#"path "database/creds/app-*" { capabilities = ["read"] }"#]);
        assert!(can(&a, "database/creds/app-ro", Read));
        assert!(can(&a, "database/creds/app-", Read));
        assert!(can(&a, "database/creds/app-ro/extra", Read));
        assert!(!can(&a, "database/creds/other", Read));
    }

    #[test]
    fn star_alone_matches_everything() {
        let a = acl(&[r#"path "*" { capabilities = ["read"] }"#]);
        assert!(can(&a, "anything/at/all", Read));
        assert!(can(&a, "", Read));
    }

    #[test]
    fn plus_matches_exactly_one_segment() {
        let a = acl(&[r#"path "secret/+/config" { capabilities = ["read"] }"#]);
        assert!(can(&a, "secret/app/config", Read));
        assert!(!can(&a, "secret/app/x/config", Read));
        assert!(!can(&a, "secret/config", Read));
        assert!(!can(&a, "secret/app/config/x", Read));
        assert!(!can(&a, "secret/app/configs", Read));
    }

    #[test]
    fn plus_with_trailing_glob() {
        let a = acl(&[r#"
            path "secret/+/data/*" { capabilities = ["read"] }
            path "+/x" { capabilities = ["update"] }
        "#]);
        assert!(can(&a, "secret/app/data/key", Read));
        assert!(can(&a, "secret/app/data/", Read));
        assert!(can(&a, "secret/app/data/a/b", Read));
        assert!(!can(&a, "secret/app/data", Read));
        assert!(!can(&a, "secret/app/meta/key", Read));
        assert!(can(&a, "anything/x", Update));
        assert!(!can(&a, "a/b/x", Update));
    }

    #[test]
    fn later_first_wildcard_wins() {
        let a = acl(&[r#"
            path "secret/+/b" { capabilities = ["read"] }
            path "secret/a/+" { capabilities = ["update"] }
            path "secret/*" { capabilities = ["list"] }
        "#]);
        // `secret/a/+` has its wildcard later than `secret/+/b`.
        assert!(can(&a, "secret/a/b", Update));
        assert!(!can(&a, "secret/a/b", Read));
        // `secret/*` has its glob at offset 7, the same as `secret/+/b`'s `+`,
        // but a non-prefix pattern beats a prefix at the same position.
        assert!(can(&a, "secret/z/b", Read));
        assert!(can(&a, "secret/z/c", List));
    }

    #[test]
    fn glob_later_than_plus_wins() {
        let a = acl(&[r#"
            path "secret/+/x" { capabilities = ["read"] }
            path "secret/ab*" { capabilities = ["update"] }
        "#]);
        assert!(can(&a, "secret/abc/x", Update));
        assert!(!can(&a, "secret/abc/x", Read));
        assert!(can(&a, "secret/zz/x", Read));
    }

    #[test]
    fn non_prefix_beats_prefix_at_same_position() {
        let a = acl(&[r#"
            path "secret/+" { capabilities = ["read"] }
            path "secret/*" { capabilities = ["update"] }
        "#]);
        assert!(can(&a, "secret/a", Read));
        assert!(!can(&a, "secret/a", Update));
        assert!(can(&a, "secret/a/b", Update));
    }

    #[test]
    fn fewer_plus_beats_longer_pattern() {
        // Vault ranks the number of `+` segments before the length.
        let a = acl(&[r#"
            path "a/+/+/xxxxxxxx*" { capabilities = ["read"] }
            path "a/+/b/*" { capabilities = ["update"] }
        "#]);
        assert!(can(&a, "a/q/b/xxxxxxxxy", Update));
        assert!(!can(&a, "a/q/b/xxxxxxxxy", Read));
        assert!(can(&a, "a/q/c/xxxxxxxxy", Read));
    }

    #[test]
    fn longer_pattern_breaks_ties() {
        let a = acl(&[r#"
            path "a/+/b*" { capabilities = ["read"] }
            path "a/+/ba*" { capabilities = ["update"] }
        "#]);
        assert!(can(&a, "a/x/bar", Update));
        assert!(!can(&a, "a/x/bar", Read));
        assert!(can(&a, "a/x/bz", Read));
    }

    #[test]
    fn lexicographically_larger_breaks_final_ties() {
        // Same first `+`, neither a prefix, two `+` each, same length: only
        // the byte order separates them, and `x` sorts after `+`.
        let a = acl(&[r#"
            path "m/+/+/y" { capabilities = ["read"] }
            path "m/+/x/+" { capabilities = ["update"] }
        "#]);
        assert!(can(&a, "m/q/x/y", Update));
        assert!(!can(&a, "m/q/x/y", Read));
        assert!(can(&a, "m/q/z/y", Read));
    }

    #[test]
    fn deny_on_winning_rule_blocks_everything() {
        let a = acl(&[r#"
            path "secret/*" { capabilities = ["read", "update", "sudo"] }
            path "secret/locked" { capabilities = ["deny"] }
        "#]);
        for cap in [Create, Read, Update, Patch, Delete, List, Sudo] {
            assert!(!can(&a, "secret/locked", cap), "{cap}");
        }
        assert!(!a.allowed("secret/locked", Read).sudo);
        assert_eq!(a.capabilities("secret/locked"), vec!["deny"]);
        assert!(can(&a, "secret/open", Read));
    }

    #[test]
    fn deny_does_not_leak_to_more_specific_rule() {
        let a = acl(&[r#"
            path "secret/*" { capabilities = ["deny"] }
            path "secret/ok" { capabilities = ["read"] }
        "#]);
        assert!(can(&a, "secret/ok", Read));
        assert!(!can(&a, "secret/other", Read));
    }

    #[test]
    fn deny_mixed_with_other_capabilities_is_deny() {
        let a = acl(&[r#"path "x" { capabilities = ["read", "deny", "update"] }"#]);
        assert!(!can(&a, "x", Read));
        assert_eq!(a.capabilities("x"), vec!["deny"]);
    }

    #[test]
    fn union_across_policies_for_same_pattern() {
        let a = acl(&[
            r#"path "secret/*" { capabilities = ["read"] }"#,
            r#"path "secret/*" { capabilities = ["update", "sudo"] }"#,
            r#"path "other" { capabilities = ["read"] }"#,
        ]);
        let read = a.allowed("secret/x", Read);
        assert!(read.allowed);
        assert!(read.sudo);
        assert_eq!(read.granting_policies, vec!["p0".to_string()]);
        let update = a.allowed("secret/x", Update);
        assert_eq!(update.granting_policies, vec!["p1".to_string()]);
        assert_eq!(a.capabilities("secret/x"), vec!["read", "sudo", "update"]);
    }

    #[test]
    fn union_within_one_policy_for_same_pattern() {
        let a = acl(&[r#"
            path "x" { capabilities = ["read"] }
            path "x" { capabilities = ["list"] }
        "#]);
        assert_eq!(a.capabilities("x"), vec!["list", "read"]);
        assert_eq!(
            a.allowed("x", Read).granting_policies,
            vec!["p0".to_string()]
        );
    }

    #[test]
    fn granting_lists_every_policy_with_the_capability() {
        let a = acl(&[
            r#"path "x" { capabilities = ["read"] }"#,
            r#"path "x" { capabilities = ["read", "list"] }"#,
        ]);
        assert_eq!(
            a.allowed("x", Read).granting_policies,
            vec!["p0".to_string(), "p1".to_string()]
        );
        assert_eq!(
            a.allowed("x", List).granting_policies,
            vec!["p1".to_string()]
        );
    }

    #[test]
    fn deny_in_any_policy_wins_for_same_pattern() {
        for order in [[0, 1], [1, 0]] {
            let srcs = [
                r#"path "secret/*" { capabilities = ["read", "update"] }"#,
                r#"path "secret/*" { capabilities = ["deny"] }"#,
            ];
            let a = acl(&[srcs[order[0]], srcs[order[1]]]);
            assert!(!can(&a, "secret/x", Read));
            assert_eq!(a.capabilities("secret/x"), vec!["deny"]);
        }
    }

    #[test]
    fn exact_and_prefix_with_same_text_are_distinct() {
        let a = acl(&[
            r#"path "secret" { capabilities = ["deny"] }"#,
            r#"path "secret*" { capabilities = ["read"] }"#,
        ]);
        assert!(!can(&a, "secret", Read));
        assert!(can(&a, "secrets", Read));
    }

    #[test]
    fn list_falls_back_to_slashless_rules() {
        let a = acl(&[r#"
            path "secret/meta" { capabilities = ["list"] }
            path "kv" { capabilities = ["read"] }
        "#]);
        assert!(can(&a, "secret/meta/", List));
        assert!(can(&a, "secret/meta", List));
        // The fallback only applies to list.
        assert!(!can(&a, "kv/", Read));
        assert!(can(&a, "kv", Read));
        assert_eq!(a.capabilities("kv/"), vec!["read"]);
    }

    #[test]
    fn list_tries_globs_on_slashless_path_first() {
        let a = acl(&[r#"
            path "secret/a*" { capabilities = ["read"] }
            path "secret/a/*" { capabilities = ["list"] }
        "#]);
        // Vault matches `secret/a` (no slash) first for list, which only
        // `secret/a*` covers, so the more specific-looking `secret/a/*` is
        // never consulted when listing `secret/a/`.
        assert!(!can(&a, "secret/a/", List));
        assert_eq!(a.capabilities("secret/a/"), vec!["read"]);
        // Non-list checks use the path as given.
        assert!(!can(&a, "secret/a/", Read));
        assert!(can(&a, "secret/a/x/", List));
    }

    #[test]
    fn trailing_slash_is_distinct_for_non_list() {
        let a = acl(&[r#"path "secret/dir/" { capabilities = ["list", "read"] }"#]);
        assert!(can(&a, "secret/dir/", List));
        assert!(can(&a, "secret/dir/", Read));
        assert!(!can(&a, "secret/dir", Read));
        assert!(!can(&a, "secret/dir", List));
    }

    #[test]
    fn sudo_is_reported_alongside_the_operation() {
        let a =
            acl(&[r#"path "sys/leases/revoke-prefix/*" { capabilities = ["update", "sudo"] }"#]);
        let d = a.allowed("sys/leases/revoke-prefix/database/", Update);
        assert!(d.allowed && d.sudo);
        assert!(can(&a, "sys/leases/revoke-prefix/x", Sudo));
        let b = acl(&[r#"path "sys/leases/revoke-prefix/*" { capabilities = ["update"] }"#]);
        let d = b.allowed("sys/leases/revoke-prefix/database/", Update);
        assert!(d.allowed && !d.sudo);
    }

    #[test]
    fn sudo_reported_even_when_operation_is_not_granted() {
        let a = acl(&[r#"path "x" { capabilities = ["sudo"] }"#]);
        let d = a.allowed("x", Read);
        assert!(!d.allowed && d.sudo);
        assert!(d.granting_policies.is_empty());
    }

    #[test]
    fn deny_capability_is_never_granted() {
        let a = acl(&[r#"path "x" { capabilities = ["read"] }"#]);
        assert!(!can(&a, "x", Deny));
        assert!(!can(&Acl::root(), "x", Deny));
    }

    #[test]
    fn empty_capability_list_shadows_broader_rules() {
        let a = acl(&[r#"
            path "secret/*" { capabilities = ["read"] }
            path "secret/none" { capabilities = [] }
        "#]);
        assert!(!can(&a, "secret/none", Read));
        assert_eq!(a.capabilities("secret/none"), vec!["deny"]);
    }

    #[test]
    fn root_acl_allows_everything() {
        let a = Acl::root();
        for cap in [Create, Read, Update, Patch, Delete, List, Sudo] {
            let d = a.allowed("sys/anything", cap);
            assert!(d.allowed && d.sudo);
            assert_eq!(d.granting_policies, vec!["root".to_string()]);
        }
        assert_eq!(a.capabilities("sys/audit"), vec!["root"]);
    }

    #[test]
    fn empty_acl_denies_everything() {
        let a = Acl::new(&[]);
        assert!(!can(&a, "auth/token/lookup-self", Read));
        assert_eq!(a.capabilities("auth/token/lookup-self"), vec!["deny"]);
    }

    #[test]
    fn capabilities_are_sorted_and_complete() {
        let a = acl(&[
            r#"path "x" { capabilities = ["update", "sudo", "read", "patch", "list", "delete", "create"] }"#,
        ]);
        assert_eq!(
            a.capabilities("x"),
            vec![
                "create", "delete", "list", "patch", "read", "sudo", "update"
            ]
        );
        assert_eq!(a.capabilities("y"), vec!["deny"]);
    }

    #[test]
    fn default_policy() {
        let p = policy(DEFAULT_POLICY_NAME, DEFAULT_POLICY);
        assert_eq!(p.name, "default");
        assert_eq!(p.raw, DEFAULT_POLICY);
        let a = Acl::new(&[p]);
        assert!(can(&a, "auth/token/lookup-self", Read));
        assert!(!can(&a, "auth/token/lookup-self", Update));
        for path in [
            "auth/token/renew-self",
            "auth/token/revoke-self",
            "sys/capabilities-self",
            "sys/leases/renew",
            "sys/leases/lookup",
        ] {
            assert!(can(&a, path, Update), "{path}");
            assert!(!can(&a, path, Read), "{path}");
        }
        assert!(!can(&a, "sys/leases/lookup/", List));
        assert!(!can(&a, "sys/leases/revoke", Update));
        assert!(!can(&a, "database/creds/ro", Read));
        assert!(!a.allowed("sys/leases/renew", Update).sudo);
        assert_eq!(
            a.allowed("sys/leases/renew", Update).granting_policies,
            vec!["default".to_string()]
        );
    }

    #[test]
    fn default_policy_combines_with_others() {
        let a = Acl::new(&[
            policy("default", DEFAULT_POLICY),
            policy(
                "app",
                r#"path "database/creds/ro" { capabilities = ["read"] }"#,
            ),
        ]);
        assert!(can(&a, "database/creds/ro", Read));
        assert!(can(&a, "auth/token/renew-self", Update));
    }

    #[test]
    fn json_form() {
        let src = r#"{"path": {"database/creds/ro": {"capabilities": ["read"]},
                              "secret/*": {"capabilities": ["list"], "comment": "hi"}}}"#;
        let a = Acl::new(&[policy("j", src)]);
        assert!(can(&a, "database/creds/ro", Read));
        assert!(can(&a, "secret/x", List));
        assert!(!can(&a, "secret/x", Read));
    }

    #[test]
    fn json_list_forms() {
        let src = r#"{"name": "ignored", "path": [
            {"a": {"capabilities": ["read"]}},
            {"b": [{"capabilities": ["update"]}]}
        ]}"#;
        let a = Acl::new(&[policy("j", src)]);
        assert!(can(&a, "a", Read));
        assert!(can(&a, "b", Update));
    }

    #[test]
    fn json_errors() {
        let err = Policy::parse("j", r#"{"path": {"a": {"capabilities": ["nope"]}}}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"invalid capability "nope" for path "a""#);
        let err = Policy::parse("j", r#"{"paths": {}}"#).unwrap_err();
        assert!(matches!(err, PolicyError::UnknownTopLevelKey { ref key } if key == "paths"));
        let err = Policy::parse("j", "{\n  \"path\": {\n  ,\n}").unwrap_err();
        assert!(
            matches!(err, PolicyError::Syntax { line: 3, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("failed to parse policy: line 3, column")
        );
        let err = Policy::parse("j", r#"{"path": {"a": "read"}}"#).unwrap_err();
        assert!(matches!(err, PolicyError::Malformed(_)));
    }

    #[test]
    fn hcl_object_attribute_form() {
        let a = Acl::new(&[policy(
            "h",
            r#"path = { "secret/*" = { capabilities = ["read"] } }"#,
        )]);
        assert!(can(&a, "secret/x", Read));
    }

    #[test]
    fn legacy_policy_key() {
        let a = acl(&[r#"
            path "r" { policy = "read" }
            path "w" { policy = "write" }
            path "s" { policy = "sudo" }
            path "d" { policy = "deny" }
        "#]);
        assert_eq!(a.capabilities("r"), vec!["list", "read"]);
        assert_eq!(
            a.capabilities("w"),
            vec!["create", "delete", "list", "read", "update"]
        );
        assert_eq!(
            a.capabilities("s"),
            vec!["create", "delete", "list", "read", "sudo", "update"]
        );
        assert_eq!(a.capabilities("d"), vec!["deny"]);
        let err = Policy::parse("p", r#"path "x" { policy = "admin" }"#).unwrap_err();
        assert_eq!(err.to_string(), r#"invalid policy "admin" for path "x""#);
    }

    #[test]
    fn invalid_capability() {
        let err = Policy::parse("p", r#"path "x" { capabilities = ["read", "foo"] }"#).unwrap_err();
        assert_eq!(err.to_string(), r#"invalid capability "foo" for path "x""#);
        // Vault treats capability names case-sensitively.
        let err = Policy::parse("p", r#"path "x" { capabilities = ["Read"] }"#).unwrap_err();
        assert!(matches!(err, PolicyError::InvalidCapability { .. }));
    }

    #[test]
    fn invalid_capability_shapes() {
        for src in [
            r#"path "x" { capabilities = "read" }"#,
            r#"path "x" { capabilities = [1] }"#,
        ] {
            let err = Policy::parse("p", src).unwrap_err();
            assert_eq!(
                err.to_string(),
                r#"invalid value for "capabilities" in path "x": expected a list of strings"#
            );
        }
        let err = Policy::parse("p", r#"path "x" { capabilities = [read] }"#).unwrap_err();
        assert!(matches!(err, PolicyError::InvalidValue { .. }), "{err:?}");
        let err = Policy::parse("p", r#"path "x" { capabilities = ["${a}"] }"#).unwrap_err();
        assert!(matches!(err, PolicyError::InvalidValue { .. }), "{err:?}");
    }

    #[test]
    fn unknown_key_in_path_block() {
        let err = Policy::parse("p", r#"path "x" { capabilites = ["read"] }"#).unwrap_err();
        assert_eq!(err.to_string(), r#"unknown key "capabilites" in path "x""#);
        let err = Policy::parse("p", r#"{"path": {"x": {"bogus": 1}}}"#).unwrap_err();
        assert!(matches!(err, PolicyError::UnknownKey { ref key, .. } if key == "bogus"));
    }

    #[test]
    fn unknown_top_level_key() {
        let err = Policy::parse("p", r#"paths "x" { capabilities = ["read"] }"#).unwrap_err();
        assert_eq!(err.to_string(), r#"unknown top-level key "paths""#);
        let err = Policy::parse("p", "foo = 1").unwrap_err();
        assert!(matches!(err, PolicyError::UnknownTopLevelKey { .. }));
        // `name` is accepted and ignored, as in Vault.
        assert!(Policy::parse("p", r#"name = "other""#).is_ok());
    }

    #[test]
    fn duplicate_key_in_path_block_is_a_syntax_error() {
        let err = Policy::parse(
            "p",
            "path \"x\" {\n capabilities = [\"read\"]\n capabilities = [\"list\"]\n}",
        )
        .unwrap_err();
        assert!(
            matches!(err, PolicyError::Syntax { line: 3, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn unsupported_constraints_are_rejected() {
        let err = Policy::parse(
            "p",
            r#"path "x" {
                capabilities = ["update"]
                allowed_parameters = { "ttl" = [] }
            }"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"allowed_parameters is not supported (path "x")"#
        );
        for key in [
            "denied_parameters = { \"a\" = [] }",
            "required_parameters = [\"a\"]",
            "min_wrapping_ttl = \"1s\"",
            "max_wrapping_ttl = 30",
            "mfa_methods = [\"m\"]",
        ] {
            let src = format!("path \"x\" {{\n {key}\n}}");
            let err = Policy::parse("p", &src).unwrap_err();
            assert!(
                matches!(err, PolicyError::Unsupported { .. }),
                "{key}: {err:?}"
            );
        }
    }

    #[test]
    fn hcl_syntax_error_has_line_info() {
        let err = Policy::parse("p", "path \"a\" {\n  capabilities = [\"read\"]\n}\npath \"b\" {\n  capabilities = [\"read\"\n}\n")
            .unwrap_err();
        let PolicyError::Syntax { line, .. } = err else {
            panic!("expected syntax error, got {err:?}");
        };
        assert!((5..=6).contains(&line), "line {line}");
        assert!(err_string_starts("path \"a\" { capabilities = }"));
    }

    fn err_string_starts(src: &str) -> bool {
        Policy::parse("p", src)
            .unwrap_err()
            .to_string()
            .starts_with("failed to parse policy: line 1, column")
    }

    #[test]
    fn path_block_needs_one_label() {
        let err = Policy::parse("p", r#"path { capabilities = ["read"] }"#).unwrap_err();
        assert!(matches!(err, PolicyError::Malformed(_)), "{err:?}");
        let err = Policy::parse("p", r#"path "a" "b" { capabilities = ["read"] }"#).unwrap_err();
        assert!(matches!(err, PolicyError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn invalid_paths() {
        let err =
            Policy::parse("p", r#"path "secret/+*" { capabilities = ["read"] }"#).unwrap_err();
        assert!(matches!(err, PolicyError::InvalidPath { .. }), "{err:?}");
        let err = Policy::parse(
            "p",
            r#"path "identity/entity/id/{{identity.entity.id}}" { capabilities = ["read"] }"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("templated"), "{err}");
    }

    #[test]
    fn names_are_lowercased_and_root_is_reserved() {
        let p = policy("MyApp", r#"path "x" { capabilities = ["read"] }"#);
        assert_eq!(p.name, "myapp");
        for name in ["root", "ROOT", "Root"] {
            let err = Policy::parse(name, "").unwrap_err();
            assert!(matches!(err, PolicyError::RootPolicy));
            assert_eq!(err.to_string(), "cannot update root policy");
        }
        assert!(matches!(
            Policy::parse("", ""),
            Err(PolicyError::MissingName)
        ));
    }

    #[test]
    fn empty_and_comment_only_policies_grant_nothing() {
        let a = acl(&["", "# nothing here\n// nor here\n"]);
        assert_eq!(a.capabilities("x"), vec!["deny"]);
    }

    #[test]
    fn raw_is_preserved_verbatim() {
        let src = "# keep me\npath \"x\" { capabilities = [\"read\"] }\n";
        assert_eq!(policy("p", src).raw, src);
    }

    #[test]
    fn capability_names_round_trip() {
        for cap in ALL_CAPABILITIES {
            assert_eq!(Capability::from_name(cap.as_str()), Some(cap));
            assert_eq!(cap.to_string(), cap.as_str());
        }
        assert_eq!(Capability::from_name("root"), None);
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> chrono::DateTime<chrono::Utc> {
        use chrono::TimeZone;
        chrono::Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn source_network_conditions() {
        let a = acl(&[r#"path "db/creds/ro" {
            capabilities = ["read"]
            allowed_source_networks = ["10.0.0.0/8", "127.0.0.1"]
        }"#]);
        let ctx = |ip: &str| RequestContext {
            remote: Some(ip.parse().unwrap()),
            now: at(2026, 1, 5, 12, 0),
        };
        assert!(a.allowed_in("db/creds/ro", Read, &ctx("10.1.2.3")).allowed);
        assert!(a.allowed_in("db/creds/ro", Read, &ctx("127.0.0.1")).allowed);
        let refused = a.allowed_in("db/creds/ro", Read, &ctx("127.0.0.2"));
        assert!(!refused.allowed);
        assert_eq!(refused.failed_condition, Some("source address not allowed"));
        let unknown = a.allowed_in(
            "db/creds/ro",
            Read,
            &RequestContext {
                remote: None,
                now: at(2026, 1, 5, 12, 0),
            },
        );
        assert!(
            !unknown.allowed,
            "an unknown address never passes a network condition"
        );
        // Another policy granting the same path without conditions still grants.
        let b = acl(&[
            r#"path "db/creds/ro" {
                capabilities = ["read"]
                allowed_source_networks = ["10.0.0.0/8"]
            }"#,
            r#"path "db/creds/ro" { capabilities = ["read"] }"#,
        ]);
        assert!(
            b.allowed_in("db/creds/ro", Read, &ctx("192.168.1.1"))
                .allowed
        );
    }

    #[test]
    fn time_window_conditions_in_a_named_zone() {
        let a = acl(&[r#"path "db/creds/ro" {
            capabilities = ["read"]
            allowed_time_windows = [{ days = ["mon", "tue", "wed", "thu", "fri"], hours = "09:00-18:00", time_zone = "Asia/Shanghai" }]
        }"#]);
        let ctx = |t| RequestContext {
            remote: None,
            now: t,
        };
        // 2026-01-05 is a Monday; Shanghai is UTC+8.
        assert!(
            a.allowed_in("db/creds/ro", Read, &ctx(at(2026, 1, 5, 1, 0)))
                .allowed,
            "09:00 Shanghai"
        );
        assert!(
            a.allowed_in("db/creds/ro", Read, &ctx(at(2026, 1, 5, 9, 59)))
                .allowed,
            "17:59 Shanghai"
        );
        let late = a.allowed_in("db/creds/ro", Read, &ctx(at(2026, 1, 5, 10, 0)));
        assert_eq!(
            (late.allowed, late.failed_condition),
            (false, Some("outside the allowed time window"))
        );
        // Saturday 10:00 in Shanghai is Saturday 02:00 UTC.
        assert!(
            !a.allowed_in("db/creds/ro", Read, &ctx(at(2026, 1, 10, 2, 0)))
                .allowed
        );
        // A window across midnight belongs to the day it starts.
        let night = acl(&[r#"path "x" {
            capabilities = ["read"]
            allowed_time_windows = [{ days = ["fri"], hours = "22:00-06:00" }]
        }"#]);
        assert!(
            night
                .allowed_in("x", Read, &ctx(at(2026, 1, 9, 23, 0)))
                .allowed,
            "Friday 23:00"
        );
        assert!(
            night
                .allowed_in("x", Read, &ctx(at(2026, 1, 10, 5, 0)))
                .allowed,
            "Saturday 05:00, Friday's night"
        );
        assert!(
            !night
                .allowed_in("x", Read, &ctx(at(2026, 1, 10, 23, 0)))
                .allowed,
            "Saturday 23:00"
        );
    }

    /// Found by the `acl_policy_hcl` fuzz target: nested unclosed expressions made the HCL
    /// parser run for minutes. Such nesting is now refused before parsing.
    #[test]
    fn deeply_nested_hcl_is_refused_quickly() {
        let started = std::time::Instant::now();
        let hostile = format!("p={}\"", "a.*%b/c- [".repeat(40));
        let err = Policy::parse("p", &hostile).unwrap_err().to_string();
        assert!(err.contains("nest 40 levels"), "{err}");
        let crash =
            include_str!("../../testdata/fuzz/acl_policy_hcl/regressions/hcl-nesting-timeout");
        assert!(Policy::parse("p", crash).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // The deepest real shape still parses.
        policy(
            "p",
            r#"path "db/creds/ro" {
                capabilities = ["read"]
                allowed_time_windows = [{ days = ["mon"], hours = "09:00-18:00" }]
            }"#,
        );
    }

    #[test]
    fn condition_and_control_group_errors() {
        for (src, needle) in [
            (
                r#"path "x" {
capabilities = ["read"]
allowed_source_networks = ["not-a-net"]
}"#,
                "CIDR",
            ),
            (
                r#"path "x" {
capabilities = ["read"]
allowed_time_windows = [{ hours = "9-5" }]
}"#,
                "hours",
            ),
            (
                r#"path "x" {
capabilities = ["read"]
allowed_time_windows = [{ time_zone = "Mars/Base" }]
}"#,
                "time zone",
            ),
            (
                r#"path "x" {
capabilities = ["deny"]
allowed_source_networks = ["10.0.0.0/8"]
}"#,
                "deny",
            ),
            (
                r#"path "x" {
capabilities = ["read"]
control_group {
approvals = 2
}
}"#,
                "approver",
            ),
            (
                r#"path "x" {
capabilities = ["read"]
control_group {
approvals = 1
approver_policies = ["dba"]
color = "red"
}
}"#,
                "color",
            ),
        ] {
            let err = Policy::parse("p", src).unwrap_err().to_string();
            assert!(err.contains(needle), "{src}: {err}");
        }
        let a = acl(&[r#"path "db/creds/prod" {
            capabilities = ["read"]
            control_group {
                approvals = 2
                approver_policies = ["dba"]
                ttl = "1h"
            }
        }"#]);
        let d = a.allowed("db/creds/prod", Read);
        assert!(d.allowed);
        let cg = d.control_group.expect("control group");
        assert_eq!(
            (
                cg.approvals,
                cg.approver_policies.as_slice(),
                cg.ttl_seconds
            ),
            (2, &["dba".to_owned()][..], 3600)
        );
    }
}
