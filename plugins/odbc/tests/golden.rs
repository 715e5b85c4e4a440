//! Golden SQL for the Dameng (DM8) dialect: every statement each operation renders, for plain
//! and hostile inputs (quotes, backslashes, `%`, non-ASCII, over-long names), compared with
//! `testdata/dialects/dameng/*.sql`. No DM server runs here, so these files are what a DBA
//! reviews against DM's documentation.
//!
//! After a deliberate change, regenerate with
//! `DBWARDEN_BLESS=1 cargo test -p dbwarden-odbc --test golden` and review the diff.

use std::fmt::Write as _;

use dbwarden_odbc::Dialect;
use dbwarden_odbc::dialect::{DAMENG_PLUGIN, ODBC_PLUGIN};
use dbwarden_plugin::UsernameMetadata;
use dbwarden_plugin::details::UsernameRules;
use dbwarden_plugin::statement::{StatementVars, render};
use dbwarden_plugin::{BackendError, SqlText};
use dbwarden_testkit::Golden;
use serde_json::{Map, Value, json};

const DIALECT: Dialect = Dialect::Dameng;

/// Names a revocation may be asked to handle. dbwarden never generates most of them, but the
/// statements it builds itself must quote anything safely.
const NAMES: &[(&str, &str)] = &[
    ("plain", "V_APP_1"),
    ("single quote", "O'BRIEN"),
    ("double quote", "A\"B"),
    ("backslash", "A\\B"),
    ("percent and underscore (no LIKE is used)", "V_%_1"),
    ("non-ASCII", "用户_1"),
    ("SQL injection attempt", "X\"; DROP USER SYSDBA; --"),
];

/// Passwords for the templates that substitute `{{password}}`.
const PASSWORDS: &[(&str, &str)] = &[
    ("policy-style", "Pw#2024abcdef%^X"),
    ("non-ASCII", "Pässwörd#1达梦"),
    ("percent and semicolon", "a%b;c#D1"),
    ("double quote (refused)", "Pw\"1#abcdefg"),
    ("single quote (refused)", "Pw'1#abcdefg"),
    ("backslash (refused)", "Pw\\1#abcdefg"),
];

fn header(out: &mut String, operation: &str, what: &str) {
    writeln!(
        out,
        "-- Golden SQL: dialect dameng (dbwarden-odbc), operation {operation}.\n\
         -- {what}\n\
         -- Not run against a DM server here: review against DM's documentation.\n\
         -- Regenerate: DBWARDEN_BLESS=1 cargo test -p dbwarden-odbc --test golden"
    )
    .unwrap();
}

fn case(out: &mut String, title: &str, inputs: &[(&str, String)]) {
    writeln!(out, "\n-- case: {title}").unwrap();
    for (k, v) in inputs {
        writeln!(out, "--   {k}: {v}").unwrap();
    }
}

fn statements(out: &mut String, result: Result<Vec<SqlText>, BackendError>) {
    match result {
        Ok(stmts) => {
            for s in stmts {
                writeln!(out, "{};", s.as_str()).unwrap();
            }
        }
        Err(e) => writeln!(out, "-- refused: {e}").unwrap(),
    }
}

fn templates(
    out: &mut String,
    operation: &str,
    what: &str,
    template: &str,
    with_password: bool,
) -> String {
    header(out, operation, what);
    writeln!(out, "-- template: {template}").unwrap();
    let users: Vec<(&str, &str)> = NAMES.iter().copied().take(4).collect();
    for (uname, user) in users {
        let passwords: &[(&str, &str)] = if with_password {
            PASSWORDS
        } else {
            &[("none", "")]
        };
        for (pname, password) in passwords {
            let mut inputs = vec![("username", format!("{user:?}"))];
            if with_password {
                inputs.push(("password", format!("{password:?}")));
            }
            case(out, &format!("username {uname}, password {pname}"), &inputs);
            statements(
                out,
                render(
                    &[template.to_owned()],
                    &StatementVars {
                        username: Some(user),
                        password: with_password.then_some(*password),
                        expiration: chrono::DateTime::from_timestamp(1_800_000_000, 0),
                    },
                ),
            );
        }
    }
    std::mem::take(out)
}

fn revoke() -> String {
    let mut out = String::new();
    header(
        &mut out,
        "revoke (default)",
        "In order: look the user up (no row: already revoked, only stray sessions are closed), \
         lock, list and close its sessions, drop with CASCADE (DM users own a same-name schema), \
         close sessions again. Session ids below are examples of V$SESSIONS rows.",
    );
    for (title, user) in NAMES {
        case(&mut out, title, &[("username", format!("{user:?}"))]);
        let mut all = vec![DIALECT.find_user(user).unwrap()];
        all.extend(DIALECT.lock(user, ""));
        all.push(DIALECT.list_sessions(user).unwrap());
        for id in [42, 9_223_372_036_854_775_807] {
            all.push(DIALECT.kill_session(id).unwrap());
        }
        all.extend(DIALECT.drop_user(user, ""));
        all.push(DIALECT.list_sessions(user).unwrap());
        statements(&mut out, Ok(all));
    }
    out
}

fn usernames() -> String {
    let mut out = String::new();
    header(
        &mut out,
        "generate_username",
        "What a username template may produce: at most 128 bytes (not characters), a letter \
         first, then letters, digits, _, $ or #. Over-long names are refused, never truncated.",
    );
    let template = r#"{{ printf "%s" .RoleName }}"#;
    let details: Map<String, Value> = json!({ "username_template": template })
        .as_object()
        .cloned()
        .unwrap();
    let (limit, unit) = DIALECT.max_username();
    let rules = UsernameRules::from_details(
        &details,
        DIALECT.default_username_template(),
        limit,
        unit,
        DIALECT.username_limit_name(),
    )
    .unwrap();
    let mut inputs: Vec<(String, String)> = NAMES
        .iter()
        .map(|(t, n)| ((*t).to_owned(), (*n).to_owned()))
        .collect();
    inputs.push((
        "128 ASCII bytes (the limit)".into(),
        format!("V{}", "A".repeat(127)),
    ));
    inputs.push(("129 ASCII bytes".into(), format!("V{}", "A".repeat(128))));
    inputs.push(("43 CJK characters = 129 bytes".into(), "用".repeat(43)));
    inputs.push(("starts with a digit".into(), "1V_APP".into()));
    inputs.push(("hyphen".into(), "V-APP-1".into()));
    for (title, name) in inputs {
        case(&mut out, &title, &[("rendered name", format!("{name:?}"))]);
        let meta = UsernameMetadata {
            display_name: String::new(),
            role_name: name,
        };
        match rules
            .generate(&meta)
            .and_then(|n| DIALECT.check_username(&n).map(|()| n))
        {
            Ok(n) => writeln!(out, "-- accepted: {n}").unwrap(),
            Err(e) => writeln!(out, "-- refused: {e}").unwrap(),
        }
    }
    writeln!(
        out,
        "\n-- default template: {}",
        DIALECT.default_username_template()
    )
    .unwrap();
    out
}

fn connection() -> String {
    let mut out = String::new();
    header(
        &mut out,
        "connect",
        "The ODBC connection string given to Dameng's driver: {{username}} and {{password}} are \
         replaced by the username and password details, braced when ODBC requires it. Passwords \
         here are examples, not secrets.",
    );
    let url = "Driver={DM8 ODBC DRIVER};Server=dm.example;TCP_PORT=5236;UID={{username}};PWD={{password}};";
    writeln!(out, "-- connection_url: {url}").unwrap();
    for (title, user, password) in [
        ("plain", "SYSDBA", "Dameng#123"),
        ("semicolon", "SYSDBA", "Dm;123#abcd"),
        ("braces", "SYSDBA", "Dm}{123#abcd"),
        ("plus and equals", "SYSDBA", "Dm+=123#abcd"),
        ("leading space", "SYSDBA", " Dm123#abcd"),
        ("non-ASCII", "管理员", "Pässwörd#1达梦"),
    ] {
        case(
            &mut out,
            title,
            &[
                ("username", format!("{user:?}")),
                ("password", format!("{password:?}")),
            ],
        );
        let details: Map<String, Value> =
            json!({"connection_url": url, "username": user, "password": password})
                .as_object()
                .cloned()
                .unwrap();
        match dbwarden_odbc::config::connection_string(DIALECT, &details) {
            Ok(s) => writeln!(out, "{s}").unwrap(),
            Err(e) => writeln!(out, "-- refused: {e}").unwrap(),
        }
    }
    case(
        &mut out,
        "DSN without credentials in the string (they are appended)",
        &[
            ("connection_url", "\"DSN=dm8\"".into()),
            ("username", "\"SYSDBA\"".into()),
            ("password", "\"Dameng#123\"".into()),
        ],
    );
    let details: Map<String, Value> =
        json!({"connection_url": "DSN=dm8", "username": "SYSDBA", "password": "Dameng#123"})
            .as_object()
            .cloned()
            .unwrap();
    writeln!(
        out,
        "{}",
        dbwarden_odbc::config::connection_string(DIALECT, &details).unwrap()
    )
    .unwrap();
    out
}

fn misc() -> String {
    let mut out = String::new();
    header(
        &mut out,
        "verify_connection, renew, selection",
        "The connection check, the renew default (none: DM's ALLOW_DATETIME is unverified, so \
         renewal changes nothing and revocation ends access), and plugin selection.",
    );
    case(&mut out, "verify_connection", &[]);
    statements(&mut out, Ok(vec![DIALECT.ping()]));
    case(&mut out, "renew (default)", &[]);
    match DIALECT.default_renew() {
        Some(s) => writeln!(out, "{s}").unwrap(),
        None => writeln!(out, "-- no statement").unwrap(),
    }
    for (plugin, details) in [
        (DAMENG_PLUGIN, json!({})),
        (ODBC_PLUGIN, json!({"dialect": "dameng"})),
        (DAMENG_PLUGIN, json!({"dialect": "mysql"})),
    ] {
        case(
            &mut out,
            "selection",
            &[
                ("plugin_name", plugin.into()),
                ("details", details.to_string()),
            ],
        );
        match Dialect::select(plugin, details.as_object().unwrap()) {
            Ok(d) => writeln!(out, "-- dialect: {}, type: {}", d.name(), d.type_name()).unwrap(),
            Err(e) => writeln!(out, "-- refused: {e}").unwrap(),
        }
    }
    out
}

#[test]
fn dameng_renders_match_golden_files() {
    let mut scratch = String::new();
    let files: Vec<(&str, String)> = vec![
        (
            "create.sql",
            templates(
                &mut scratch,
                "new_user (suggested creation statement)",
                "Roles carry their own creation statements, as in Vault; this is the suggested one. \
                 Values that could leave their quotes are refused before any SQL runs.",
                DIALECT.suggested_creation().unwrap(),
                true,
            ),
        ),
        (
            "rotate.sql",
            templates(
                &mut scratch,
                "update_user (default rotation)",
                "Used for static roles and root rotation when no rotation statement is given. DM \
                 wants passwords with punctuation double-quoted.",
                DIALECT.default_rotation().unwrap(),
                true,
            ),
        ),
        ("revoke.sql", revoke()),
        ("usernames.sql", usernames()),
        ("connection.sql", connection()),
        ("misc.sql", misc()),
        (
            "password_policy.hcl",
            format!(
                "# Golden: the dameng dialect's default password policy (Vault HCL syntax).\n{}",
                DIALECT.default_password_policy().unwrap()
            ),
        ),
    ];
    let mut golden = Golden::new();
    for (name, rendered) in files {
        golden.check(&format!("dialects/dameng/{name}"), &rendered);
    }
    golden.finish();
}

/// Every password the DM policy's alphabet can produce passes DM's complexity rules; checked
/// here on the policy's text, and by dbwarden's own generator in the server's tests.
#[test]
fn dameng_policy_alphabet_meets_pwd_policy_31() {
    use dbwarden_odbc::dialect::{
        DAMENG_MAX_PASSWORD_BYTES, DAMENG_MIN_PASSWORD_LEN, DAMENG_PASSWORD_PUNCTUATION,
    };
    let policy = DIALECT.default_password_policy().unwrap();
    let length: usize = policy
        .lines()
        .find_map(|l| l.strip_prefix("length = "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((DAMENG_MIN_PASSWORD_LEN..=DAMENG_MAX_PASSWORD_BYTES).contains(&length));
    for needed in [
        "abcdefghijklmnopqrstuvwxyz",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        DAMENG_PASSWORD_PUNCTUATION,
    ] {
        assert!(
            policy.contains(&format!("charset = \"{needed}\"\n  min-chars = 1")),
            "{needed}"
        );
    }
    assert!(
        DAMENG_PASSWORD_PUNCTUATION
            .chars()
            .all(|c| c.is_ascii_punctuation() && !"'\"`\\@".contains(c))
    );
}
