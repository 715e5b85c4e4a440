//! Vault password policies (`sys/policies/password`) and Vault's default password generator.
//!
//! A policy is HCL, sent raw or base64-encoded:
//!
//! ```hcl
//! length = 20
//! rule "charset" {
//!   charset   = "abcdefghijklmnopqrstuvwxyz"
//!   min-chars = 1
//! }
//! ```
//!
//! The alphabet is the union of every rule's charset. A password is `length` characters
//! drawn uniformly from that alphabet such that each rule's charset contributes at least
//! `min-chars` of them.

use base64::Engine as _;
use hcl::{Block, Body, Expression, Structure};
use rand::RngExt as _;
use secrecy::SecretString;
use zeroize::Zeroize as _;

/// Shortest password a policy may ask for.
const MIN_LENGTH: usize = 4;
/// Longest password a policy may ask for.
const MAX_LENGTH: usize = 100;
/// Largest alphabet: Vault picks characters with one random byte each.
const MAX_ALPHABET: usize = 256;
/// Candidate passwords drawn before a policy is declared impossible. Vault uses a 1 s timeout
/// instead; a count is deterministic and, for any policy a human would write, millions of
/// times more than needed (the default policy accepts about one candidate in four).
const MAX_ATTEMPTS: usize = 10_000;

/// A validated password policy.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    /// Number of characters in a generated password.
    pub length: usize,
    /// Charset rules; their union is the alphabet.
    pub rules: Vec<CharsetRule>,
}

/// One `rule "charset"` block.
#[derive(Debug, Clone)]
pub struct CharsetRule {
    /// Characters this rule contributes to the alphabet.
    pub charset: Vec<char>,
    /// How many characters of the password must come from `charset`.
    pub min_chars: usize,
}

/// Why a policy was rejected or a password could not be generated. Never carries a password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordPolicyError {
    /// The text is not valid HCL.
    #[error("invalid password policy HCL: {0}")]
    Hcl(#[source] hcl::Error),
    /// Brackets nest deeper than the HCL parser can handle quickly.
    #[error("brackets nest {0} levels deep; at most {max} are allowed", max = crate::auth::policy::MAX_HCL_NESTING)]
    NestedTooDeeply(usize),
    /// The text decoded as base64, but not to UTF-8.
    #[error("password policy is base64 but does not decode to UTF-8 text")]
    NotUtf8,
    /// An attribute or block the policy language does not have.
    #[error("unknown key \"{0}\" in password policy")]
    UnknownKey(String),
    /// A `rule` block whose type is not `charset`.
    #[error("unknown rule type \"{0}\": only \"charset\" is supported")]
    UnknownRuleType(String),
    /// A `rule` block without exactly one label.
    #[error("a rule needs exactly one type label, as in rule \"charset\" {{ ... }}")]
    MissingRuleType,
    /// A key holds a value of the wrong kind.
    #[error("\"{key}\" must be {expected}")]
    InvalidValue {
        /// The offending key.
        key: &'static str,
        /// What the key accepts.
        expected: &'static str,
    },
    /// The policy has no `length`.
    #[error("password policy is missing \"length\"")]
    MissingLength,
    /// `length` is outside 4..=100.
    #[error("length must be between {MIN_LENGTH} and {MAX_LENGTH}, got {0}")]
    LengthOutOfRange(i64),
    /// A charset rule without a `charset`, or with an empty one.
    #[error("every charset rule needs a non-empty \"charset\"")]
    EmptyCharset,
    /// The policy has no rules, so no alphabet.
    #[error("no charset specified: add at least one rule \"charset\" block")]
    NoCharset,
    /// The combined alphabet is too large.
    #[error("the combined charset has {0} distinct characters; at most {MAX_ALPHABET} are allowed")]
    CharsetTooLarge(usize),
    /// The alphabet contains a character that is not printable.
    #[error("charset contains the non-printable character U+{0:04X}")]
    NonPrintable(u32),
    /// The rules need more characters than the password has.
    #[error("specified rules require at least {required} characters but length is {length}")]
    RulesExceedLength {
        /// Sum of every rule's `min-chars`.
        required: usize,
        /// The policy's length.
        length: usize,
    },
    /// No candidate satisfied every rule within the attempt budget.
    #[error("unable to generate a password that satisfies the policy: are the rules impossible?")]
    Impossible,
}

impl PasswordPolicy {
    /// Parses and validates a policy given as HCL or as base64-encoded HCL.
    pub fn parse(source: &str) -> Result<Self, PasswordPolicyError> {
        let text = decode_base64_or_raw(source)?;
        let policy = Self::from_body(parse_hcl(&text)?)?;
        policy.alphabet()?;
        Ok(policy)
    }

    /// Vault's built-in generator: 20 characters of `[a-zA-Z0-9-]` with at least one
    /// lowercase letter, one uppercase letter, one digit and one dash.
    pub fn vault_default() -> Self {
        let rule = |charset: &str| CharsetRule {
            charset: charset.chars().collect(),
            min_chars: 1,
        };
        Self {
            length: 20,
            rules: vec![
                rule("abcdefghijklmnopqrstuvwxyz"),
                rule("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
                rule("0123456789"),
                rule("-"),
            ],
        }
    }

    /// Generates a password that satisfies every rule.
    ///
    /// Rejection sampling, as Vault does: draw every character uniformly from the alphabet
    /// and retry until all rules hold. The result is exactly uniform over the passwords that
    /// satisfy the policy. Placing the required characters first and shuffling would always
    /// succeed, but it over-weights passwords with few characters from the required sets.
    pub fn generate(&self) -> Result<SecretString, PasswordPolicyError> {
        // The fields are public, so a policy may not have come through `parse`.
        let alphabet = self.alphabet()?;
        // For each rule that demands characters: which alphabet entries count towards it.
        let requirements: Vec<(Vec<bool>, usize)> = self
            .rules
            .iter()
            .filter(|rule| rule.min_chars > 0)
            .map(|rule| {
                let members = alphabet.iter().map(|c| rule.charset.contains(c)).collect();
                (members, rule.min_chars)
            })
            .collect();
        let satisfied = |picks: &[usize]| {
            requirements
                .iter()
                .all(|(members, min)| picks.iter().filter(|&&i| members[i]).count() >= *min)
        };

        let mut rng = rand::rng();
        let mut picks = vec![0usize; self.length];
        for _ in 0..MAX_ATTEMPTS {
            for pick in &mut picks {
                *pick = rng.random_range(0..alphabet.len());
            }
            if satisfied(&picks) {
                // Sized up front so building the password never reallocates and leaves a copy.
                let bytes = picks.iter().map(|&i| alphabet[i].len_utf8()).sum();
                let mut password = String::with_capacity(bytes);
                password.extend(picks.iter().map(|&i| alphabet[i]));
                picks.zeroize();
                return Ok(SecretString::from(password));
            }
        }
        picks.zeroize();
        Err(PasswordPolicyError::Impossible)
    }

    /// Validates the policy and returns its alphabet: every rule's characters, sorted and
    /// deduplicated.
    fn alphabet(&self) -> Result<Vec<char>, PasswordPolicyError> {
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&self.length) {
            let length = i64::try_from(self.length).unwrap_or(i64::MAX);
            return Err(PasswordPolicyError::LengthOutOfRange(length));
        }
        if self.rules.iter().any(|rule| rule.charset.is_empty()) {
            return Err(PasswordPolicyError::EmptyCharset);
        }
        let mut alphabet: Vec<char> = self
            .rules
            .iter()
            .flat_map(|rule| rule.charset.iter().copied())
            .collect();
        alphabet.sort_unstable();
        alphabet.dedup();
        if alphabet.is_empty() {
            return Err(PasswordPolicyError::NoCharset);
        }
        if alphabet.len() > MAX_ALPHABET {
            return Err(PasswordPolicyError::CharsetTooLarge(alphabet.len()));
        }
        if let Some(&c) = alphabet.iter().find(|&&c| !is_printable(c)) {
            return Err(PasswordPolicyError::NonPrintable(u32::from(c)));
        }
        let required = self
            .rules
            .iter()
            .fold(0usize, |sum, rule| sum.saturating_add(rule.min_chars));
        if required > self.length {
            return Err(PasswordPolicyError::RulesExceedLength {
                required,
                length: self.length,
            });
        }
        Ok(alphabet)
    }

    /// Reads `length` and the rule blocks out of a parsed HCL body.
    fn from_body(body: Body) -> Result<Self, PasswordPolicyError> {
        let mut length = None;
        let mut rules = Vec::new();
        for structure in body {
            match structure {
                Structure::Attribute(attr) if attr.key.as_str() == "length" => {
                    // The range itself is checked with everything else in `alphabet`.
                    let value = integer(&attr.expr, "length")?;
                    length = Some(
                        usize::try_from(value)
                            .map_err(|_| PasswordPolicyError::LengthOutOfRange(value))?,
                    );
                }
                Structure::Attribute(attr) if attr.key.as_str() == "rule" => {
                    return Err(PasswordPolicyError::InvalidValue {
                        key: "rule",
                        expected: "a block, as in rule \"charset\" { ... }",
                    });
                }
                Structure::Block(block) if block.identifier.as_str() == "rule" => {
                    rules.push(parse_rule(block)?);
                }
                Structure::Attribute(attr) => {
                    return Err(PasswordPolicyError::UnknownKey(attr.key.to_string()));
                }
                Structure::Block(block) => {
                    return Err(PasswordPolicyError::UnknownKey(
                        block.identifier.to_string(),
                    ));
                }
            }
        }
        Ok(Self {
            length: length.ok_or(PasswordPolicyError::MissingLength)?,
            rules,
        })
    }
}

/// Reads one `rule "<type>" { ... }` block.
fn parse_rule(block: Block) -> Result<CharsetRule, PasswordPolicyError> {
    let [label] = block.labels.as_slice() else {
        return Err(PasswordPolicyError::MissingRuleType);
    };
    if label.as_str() != "charset" {
        return Err(PasswordPolicyError::UnknownRuleType(
            label.as_str().to_owned(),
        ));
    }
    let mut charset = None;
    let mut min_chars = 0;
    for structure in block.body {
        match structure {
            Structure::Attribute(attr) if attr.key.as_str() == "charset" => {
                let Expression::String(text) = attr.expr else {
                    return Err(PasswordPolicyError::InvalidValue {
                        key: "charset",
                        expected: "a string without interpolation",
                    });
                };
                charset = Some(text.chars().collect::<Vec<_>>());
            }
            Structure::Attribute(attr) if attr.key.as_str() == "min-chars" => {
                min_chars = usize::try_from(integer(&attr.expr, "min-chars")?).map_err(|_| {
                    PasswordPolicyError::InvalidValue {
                        key: "min-chars",
                        expected: "a non-negative integer",
                    }
                })?;
            }
            Structure::Attribute(attr) => {
                return Err(PasswordPolicyError::UnknownKey(attr.key.to_string()));
            }
            Structure::Block(inner) => {
                return Err(PasswordPolicyError::UnknownKey(
                    inner.identifier.to_string(),
                ));
            }
        }
    }
    match charset {
        Some(charset) if !charset.is_empty() => Ok(CharsetRule { charset, min_chars }),
        _ => Err(PasswordPolicyError::EmptyCharset),
    }
}

/// An integer-valued attribute. Vault decodes without weak typing, so `"20"` and `20.5` fail.
fn integer(expr: &Expression, key: &'static str) -> Result<i64, PasswordPolicyError> {
    match expr {
        Expression::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or(PasswordPolicyError::InvalidValue {
        key,
        expected: "an integer",
    })
}

/// Vault accepts a policy as base64 of the HCL. Raw HCL is never valid base64 (it has `=`
/// before its end, spaces or quotes), so a successful decode decides the format.
fn decode_base64_or_raw(source: &str) -> Result<String, PasswordPolicyError> {
    // Go's StdEncoding skips line breaks, so wrapped `base64` output decodes there too.
    let compact: String = source
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    if compact.is_empty() {
        return Ok(String::new());
    }
    match base64::engine::general_purpose::STANDARD.decode(compact) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| PasswordPolicyError::NotUtf8),
        Err(_) => Ok(source.to_owned()),
    }
}

/// Parses HCL, also accepting HCL1's one-line blocks that Vault's parser allows.
fn parse_hcl(text: &str) -> Result<Body, PasswordPolicyError> {
    // The parser is exponential in the nesting of some unclosed expressions.
    if let Some(depth) = crate::auth::policy::hcl_nesting_exceeded(text) {
        return Err(PasswordPolicyError::NestedTooDeeply(depth));
    }
    hcl::parse(text).or_else(|original| {
        // hcl-rs speaks HCL2, which forbids `rule "charset" { charset = "a" min-chars = 1 }`
        // (several attributes on one line). Vault's HCL1 parser accepts it and Vault's docs
        // use it, so retry with line breaks between such attributes. Valid HCL2 never takes
        // this path, and if the retry fails too the original error is the useful one.
        split_one_line_attributes(text)
            .and_then(|rewritten| hcl::parse(&rewritten).ok())
            .ok_or(PasswordPolicyError::Hcl(original))
    })
}

/// Inserts a line break wherever HCL1 lets a new item start on the same line: before a
/// `key =` or a block that follows a value, and before anything that follows a closing `}`.
/// Braces get line breaks inside them too, since HCL2 allows only one attribute in a
/// one-line block. Strings and comments are copied untouched. Returns `None` for input this
/// scan cannot handle safely (heredocs, interpolation, unterminated strings or comments) or
/// when nothing would change.
fn split_one_line_attributes(text: &str) -> Option<String> {
    if text.contains("<<") || text.contains("${") || text.contains("%{") {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 16);
    // The last character of code seen on the current line ('\n' at a line start).
    let mut last = '\n';
    let mut changed = false;
    let mut pos = 0;
    while let Some(c) = text[pos..].chars().next() {
        let rest = &text[pos..];
        let is_comment = c == '#' || rest.starts_with("//") || rest.starts_with("/*");
        let len = if c == '"' {
            quoted_len(rest)?
        } else if rest.starts_with("/*") {
            rest.find("*/")? + 2
        } else if is_comment {
            rest.find('\n').unwrap_or(rest.len())
        } else if c.is_alphabetic() || c == '_' {
            let len = rest
                .find(|x: char| !(x.is_alphanumeric() || x == '_' || x == '-'))
                .unwrap_or(rest.len());
            let after = rest[len..].trim_start_matches([' ', '\t']);
            let after_value = last == '"' || last.is_alphanumeric() || "])".contains(last);
            let starts_item = (after.starts_with('=') && !after.starts_with("=="))
                || after.starts_with(['"', '{']);
            if last == '}' || (after_value && starts_item) {
                out.push('\n');
                changed = true;
            }
            len
        } else {
            c.len_utf8()
        };
        let piece = &rest[..len];
        match c {
            '{' => out.push_str("{\n"),
            '}' => out.push_str("\n}"),
            _ => out.push_str(piece),
        }
        pos += len;
        let code_end = piece.chars().last().filter(|_| !is_comment);
        if let Some(end) = code_end.filter(|&end| end == '\n' || !end.is_whitespace()) {
            last = end;
        }
    }
    changed.then_some(out)
}

/// Length of the double-quoted string at the start of `s`, quotes included; `None` if it is
/// unterminated on its line.
fn quoted_len(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            '\n' => return None,
            '"' if !escaped => return Some(i + 1),
            '\\' if !escaped => escaped = true,
            _ => escaped = false,
        }
    }
    None
}

/// Approximates Go's `unicode.IsPrint`, which Vault applies to the alphabet: letters, marks,
/// numbers, punctuation, symbols and the ASCII space. Without Unicode category tables this
/// rejects control characters, every other whitespace, and the common invisible format
/// characters (soft hyphen, zero-width and bidirectional controls, BOM).
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(
            c,
            '\u{AD}'
                | '\u{61C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E000}'..='\u{F8FF}'
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    /// The example policy from Vault's password policy documentation.
    const DOCS_EXAMPLE: &str = r#"
length = 20

rule "charset" {
  charset = "abcdefghijklmnopqrstuvwxyz"
  min-chars = 1
}

rule "charset" {
  charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
  min-chars = 1
}

rule "charset" {
  charset = "0123456789"
  min-chars = 1
}

rule "charset" {
  charset = "!@#$%^&*"
  min-chars = 1
}
"#;

    fn parse_err(source: &str) -> PasswordPolicyError {
        match PasswordPolicy::parse(source) {
            Ok(policy) => panic!("{source:?} should be rejected, got {policy:?}"),
            Err(e) => e,
        }
    }

    fn count_in(password: &str, set: &str) -> usize {
        password.chars().filter(|c| set.contains(*c)).count()
    }

    /// Generates `n` passwords and checks each against every rule of `policy`.
    fn check_many(policy: &PasswordPolicy, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let password = policy.generate().unwrap().expose_secret().to_owned();
                assert_eq!(password.chars().count(), policy.length);
                for rule in &policy.rules {
                    let set: String = rule.charset.iter().collect();
                    assert!(count_in(&password, &set) >= rule.min_chars);
                }
                password
            })
            .collect()
    }

    #[test]
    fn error_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<PasswordPolicyError>();
    }

    #[test]
    fn vault_default_shape() {
        let policy = PasswordPolicy::vault_default();
        assert_eq!(policy.length, 20);
        assert_eq!(policy.alphabet().unwrap().len(), 63);
        assert!(policy.rules.iter().all(|rule| rule.min_chars == 1));
    }

    #[test]
    fn vault_default_passwords_satisfy_every_rule() {
        let policy = PasswordPolicy::vault_default();
        for password in check_many(&policy, 2_000) {
            assert!(
                password
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            );
            assert!(
                password.chars().any(|c| c.is_ascii_lowercase()),
                "{password}"
            );
            assert!(
                password.chars().any(|c| c.is_ascii_uppercase()),
                "{password}"
            );
            assert!(password.chars().any(|c| c.is_ascii_digit()), "{password}");
            assert!(password.contains('-'), "{password}");
        }
    }

    #[test]
    fn vault_default_is_roughly_uniform_and_unique() {
        let passwords = check_many(&PasswordPolicy::vault_default(), 3_000);
        let mut counts = std::collections::HashMap::new();
        for c in passwords.iter().flat_map(|p| p.chars()) {
            *counts.entry(c).or_insert(0usize) += 1;
        }
        // Uniform over valid passwords: a password holds on average 20/63 dashes unconditioned
        // but 1.157 given it has one, so '-' appears ~3,470 times in 3,000 passwords and each
        // other character ~910 times. The bounds are many standard deviations wide.
        assert_eq!(counts.len(), 63);
        for (c, n) in counts {
            let expected = if c == '-' { 3_000..=4_000 } else { 700..=1_150 };
            assert!(expected.contains(&n), "{c:?} drawn {n} times");
        }
        let unique: std::collections::HashSet<_> = passwords.iter().collect();
        assert_eq!(unique.len(), passwords.len());
    }

    #[test]
    fn parses_vault_docs_example() {
        let policy = PasswordPolicy::parse(DOCS_EXAMPLE).unwrap();
        assert_eq!(policy.length, 20);
        assert_eq!(policy.rules.len(), 4);
        assert_eq!(
            policy.rules[3].charset,
            "!@#$%^&*".chars().collect::<Vec<_>>()
        );
        assert_eq!(policy.alphabet().unwrap().len(), 26 + 26 + 10 + 8);
        for password in check_many(&policy, 500) {
            assert!(count_in(&password, "!@#$%^&*") >= 1);
        }
    }

    #[test]
    fn parses_hcl1_one_line_blocks() {
        let policy = PasswordPolicy::parse(
            "length = 20\n\
             rule \"charset\" { charset = \"abcdefghijklmnopqrstuvwxyz\" min-chars = 1 }\n\
             rule \"charset\" { charset = \"0123456789\"                 min-chars = 1 }\n",
        )
        .unwrap();
        assert_eq!(policy.rules.len(), 2);
        assert!(policy.rules.iter().all(|rule| rule.min_chars == 1));
        check_many(&policy, 100);

        let squeezed = PasswordPolicy::parse(
            r#"length = 8 rule "charset" { charset = "ab" } rule "charset" { charset = "c" min-chars = 2 }"#,
        )
        .unwrap();
        assert_eq!((squeezed.length, squeezed.rules.len()), (8, 2));
        assert_eq!(squeezed.rules[1].min_chars, 2);
    }

    #[test]
    fn one_line_rewrite_leaves_strings_and_comments_alone() {
        let source = "length = 10 # note x = 1 \"\n\
                      rule \"charset\" { charset = \"a = b # c\" min-chars = 1 } // y = 2\n";
        let policy = PasswordPolicy::parse(source).unwrap();
        assert_eq!(policy.length, 10);
        let charset: String = policy.rules[0].charset.iter().collect();
        assert_eq!(charset, "a = b # c");
        // Unterminated strings and interpolation are left for hcl-rs to report.
        assert_eq!(split_one_line_attributes("a = \"x\" b = \"y"), None);
        assert_eq!(split_one_line_attributes("a = \"${x}\" b = 1"), None);
        assert_eq!(split_one_line_attributes("a = 1\nb = 2\n"), None);
    }

    #[test]
    fn min_chars_defaults_to_zero() {
        let policy =
            PasswordPolicy::parse("length = 12\nrule \"charset\" {\n  charset = \"xyz\"\n}\n")
                .unwrap();
        assert_eq!(policy.rules[0].min_chars, 0);
        for password in check_many(&policy, 50) {
            assert!(password.chars().all(|c| "xyz".contains(c)));
        }
    }

    #[test]
    fn alphabet_is_deduplicated() {
        let policy = PasswordPolicy::parse(
            "length = 30\n\
             rule \"charset\" {\n charset = \"aab\"\n min-chars = 2\n}\n\
             rule \"charset\" {\n charset = \"bc\"\n}\n",
        )
        .unwrap();
        assert_eq!(policy.alphabet().unwrap(), vec!['a', 'b', 'c']);
        for password in check_many(&policy, 200) {
            assert!(password.chars().all(|c| "abc".contains(c)));
        }
    }

    #[test]
    fn unicode_and_space_charsets() {
        let policy = PasswordPolicy::parse(
            "length = 10\nrule \"charset\" {\n charset = \"äöü €\"\n min-chars = 10\n}\n",
        )
        .unwrap();
        for password in check_many(&policy, 50) {
            assert!(password.chars().all(|c| "äöü €".contains(c)));
        }
    }

    #[test]
    fn accepts_base64() {
        use base64::engine::general_purpose::STANDARD;
        let policy = PasswordPolicy::parse(&STANDARD.encode(DOCS_EXAMPLE)).unwrap();
        assert_eq!(policy.rules.len(), 4);

        // Wrapped at 76 columns with a trailing newline, as `base64` prints it.
        let encoded = STANDARD.encode(DOCS_EXAMPLE);
        let wrapped: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        let policy = PasswordPolicy::parse(&(wrapped.join("\n") + "\n")).unwrap();
        assert_eq!(policy.length, 20);

        assert!(matches!(
            parse_err(&STANDARD.encode([0xff, 0xfe, 0x00])),
            PasswordPolicyError::NotUtf8
        ));
    }

    #[test]
    fn impossible_policy_fails_cleanly() {
        // Valid on paper, but a candidate meets it with probability (1/62)^20.
        let policy = PasswordPolicy::parse(
            "length = 20\n\
             rule \"charset\" {\n charset = \"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\"\n}\n\
             rule \"charset\" {\n charset = \"a\"\n min-chars = 20\n}\n",
        )
        .unwrap();
        let err = policy.generate().unwrap_err();
        assert!(matches!(err, PasswordPolicyError::Impossible));
        assert_eq!(
            err.to_string(),
            "unable to generate a password that satisfies the policy: are the rules impossible?"
        );
    }

    #[test]
    fn length_bounds() {
        let policy = |length: &str| {
            format!("length = {length}\nrule \"charset\" {{\n charset = \"abc\"\n}}\n")
        };
        assert_eq!(PasswordPolicy::parse(&policy("4")).unwrap().length, 4);
        assert_eq!(PasswordPolicy::parse(&policy("100")).unwrap().length, 100);
        for bad in ["3", "101", "0", "-5"] {
            assert!(
                matches!(
                    parse_err(&policy(bad)),
                    PasswordPolicyError::LengthOutOfRange(_)
                ),
                "{bad}"
            );
        }
        for bad in ["\"20\"", "20.5", "true", "99999999999999999999999"] {
            assert!(
                matches!(
                    parse_err(&policy(bad)),
                    PasswordPolicyError::InvalidValue { key: "length", .. }
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_err("rule \"charset\" {\n charset = \"abc\"\n}\n"),
            PasswordPolicyError::MissingLength
        ));
    }

    #[test]
    fn min_chars_sum_may_not_exceed_length() {
        let err = parse_err(
            "length = 5\n\
             rule \"charset\" {\n charset = \"abc\"\n min-chars = 3\n}\n\
             rule \"charset\" {\n charset = \"123\"\n min-chars = 3\n}\n",
        );
        assert!(matches!(
            err,
            PasswordPolicyError::RulesExceedLength {
                required: 6,
                length: 5
            }
        ));
        assert_eq!(
            err.to_string(),
            "specified rules require at least 6 characters but length is 5"
        );
    }

    #[test]
    fn unknown_keys_and_rule_types() {
        assert!(matches!(
            parse_err("length = 20\nfoo = 1\nrule \"charset\" {\n charset = \"abc\"\n}\n"),
            PasswordPolicyError::UnknownKey(key) if key == "foo"
        ));
        assert!(matches!(
            parse_err("length = 20\nrule \"charset\" {\n charset = \"abc\"\n min_chars = 1\n}\n"),
            PasswordPolicyError::UnknownKey(key) if key == "min_chars"
        ));
        assert!(matches!(
            parse_err("length = 20\nrule \"charset\" {\n charset = \"abc\"\n nested {}\n}\n"),
            PasswordPolicyError::UnknownKey(_)
        ));
        assert!(matches!(
            parse_err("length = 20\npolicy {\n}\n"),
            PasswordPolicyError::UnknownKey(_)
        ));
        assert!(matches!(
            parse_err("length = 20\nrule \"foo\" {\n charset = \"abc\"\n}\n"),
            PasswordPolicyError::UnknownRuleType(kind) if kind == "foo"
        ));
        assert!(matches!(
            parse_err("length = 20\nrule {\n charset = \"abc\"\n}\n"),
            PasswordPolicyError::MissingRuleType
        ));
        assert!(matches!(
            parse_err("length = 20\nrule \"charset\" \"extra\" {\n charset = \"abc\"\n}\n"),
            PasswordPolicyError::MissingRuleType
        ));
        assert!(matches!(
            parse_err("length = 20\nrule = 1\n"),
            PasswordPolicyError::InvalidValue { key: "rule", .. }
        ));
    }

    #[test]
    fn bad_rule_values() {
        let rule = |body: &str| format!("length = 20\nrule \"charset\" {{\n{body}\n}}\n");
        assert!(matches!(
            parse_err(&rule("min-chars = 1")),
            PasswordPolicyError::EmptyCharset
        ));
        assert!(matches!(
            parse_err(&rule("charset = \"\"")),
            PasswordPolicyError::EmptyCharset
        ));
        assert!(matches!(
            parse_err(&rule("charset = \"abc\"\nmin-chars = -1")),
            PasswordPolicyError::InvalidValue {
                key: "min-chars",
                ..
            }
        ));
        assert!(matches!(
            parse_err(&rule("charset = 5")),
            PasswordPolicyError::InvalidValue { key: "charset", .. }
        ));
        assert!(matches!(
            parse_err(&rule("charset = \"${var.x}\"")),
            PasswordPolicyError::InvalidValue { key: "charset", .. }
        ));
    }

    #[test]
    fn alphabet_limits() {
        assert!(matches!(
            parse_err("length = 20\n"),
            PasswordPolicyError::NoCharset
        ));
        let big: String = ('\u{4E00}'..'\u{4E00}')
            .chain('\u{4E00}'..='\u{4F00}')
            .collect();
        assert_eq!(big.chars().count(), 257);
        assert!(matches!(
            parse_err(&format!(
                "length = 20\nrule \"charset\" {{\n charset = \"{big}\"\n}}\n"
            )),
            PasswordPolicyError::CharsetTooLarge(257)
        ));
        let exactly_256: String = big.chars().skip(1).collect();
        PasswordPolicy::parse(&format!(
            "length = 20\nrule \"charset\" {{\n charset = \"{exactly_256}\"\n}}\n"
        ))
        .unwrap();
    }

    #[test]
    fn non_printable_characters_are_rejected() {
        for (escape, code) in [
            ("\\t", 0x09),
            ("\\n", 0x0A),
            ("\\u0000", 0),
            ("\\u200b", 0x200B),
        ] {
            let err = parse_err(&format!(
                "length = 20\nrule \"charset\" {{\n charset = \"ab{escape}\"\n}}\n"
            ));
            assert!(
                matches!(err, PasswordPolicyError::NonPrintable(c) if c == code),
                "{escape}: {err}"
            );
        }
    }

    #[test]
    fn syntax_errors_are_reported() {
        for source in [
            "length = ",
            "length = 20\nrule \"charset\" {",
            "{{{",
            "length == 3",
        ] {
            assert!(
                matches!(parse_err(source), PasswordPolicyError::Hcl(_)),
                "{source:?}"
            );
        }
    }

    /// The HCL parser is exponential in some nestings (found by the `acl_policy_hcl` fuzz
    /// target on the same parser), so deep nesting is refused before parsing.
    #[test]
    fn deeply_nested_hcl_is_refused() {
        let hostile = format!("length = {}\"", "a.*%b/c- [".repeat(40));
        assert!(matches!(
            PasswordPolicy::parse(&hostile),
            Err(PasswordPolicyError::NestedTooDeeply(40))
        ));
    }

    #[test]
    fn generate_revalidates_hand_built_policies() {
        let bad = PasswordPolicy {
            length: 2,
            rules: PasswordPolicy::vault_default().rules,
        };
        assert!(matches!(
            bad.generate(),
            Err(PasswordPolicyError::LengthOutOfRange(2))
        ));
        let empty = PasswordPolicy {
            length: 10,
            rules: vec![],
        };
        assert!(matches!(
            empty.generate(),
            Err(PasswordPolicyError::NoCharset)
        ));
    }
}
