//! Password complexity: the rules a database enforces on new passwords, and the default
//! password policy dbwarden's dialects hand to the engine.
//!
//! A dialect documents its database's own rule as a [`PasswordRules`] value and offers a
//! Vault password policy (HCL) that always satisfies it, through
//! [`crate::DatabaseBackend::default_password_policy`]. The engine generates passwords from
//! that policy when a connection names none; a test in dbwarden generates thousands of
//! passwords from every dialect's policy and checks each against the dialect's rule.

/// The policy the domestic dialects share: 20 characters with at least one lower-case letter,
/// one upper-case letter, one digit and one of `@#%^`.
///
/// Why these characters: `@ # % ^` is the intersection of the special characters HighGo
/// (`!@#$%^&*()`) and PolarDB-X (`@#$%^&+=`) accept, and every other dialect's rule accepts
/// them too. None of them can end a quoted SQL literal, so statement templates substitute them
/// safely. 20 characters is PolarDB-X's maximum and at least every documented minimum.
pub const COMMON_POLICY: &str = r#"length = 20
rule "charset" {
  charset   = "abcdefghijklmnopqrstuvwxyz"
  min-chars = 1
}
rule "charset" {
  charset   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
  min-chars = 1
}
rule "charset" {
  charset   = "0123456789"
  min-chars = 1
}
rule "charset" {
  charset   = "@#%^"
  min-chars = 1
}
"#;

/// The four character classes complexity rules count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    /// `a`–`z`.
    Lower,
    /// `A`–`Z`.
    Upper,
    /// `0`–`9`.
    Digit,
    /// Anything else (punctuation).
    Special,
}

impl CharClass {
    fn of(c: char) -> CharClass {
        if c.is_ascii_lowercase() {
            CharClass::Lower
        } else if c.is_ascii_uppercase() {
            CharClass::Upper
        } else if c.is_ascii_digit() {
            CharClass::Digit
        } else {
            CharClass::Special
        }
    }

    fn name(self) -> &'static str {
        match self {
            CharClass::Lower => "lower-case letter",
            CharClass::Upper => "upper-case letter",
            CharClass::Digit => "digit",
            CharClass::Special => "special character",
        }
    }
}

/// A database's rule for acceptable passwords, as its documentation states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordRules {
    /// Where the rule comes from, for messages (e.g. "openGauss password_policy = 1").
    pub source: &'static str,
    /// Fewest characters.
    pub min_len: usize,
    /// Most characters.
    pub max_len: usize,
    /// Classes that must each appear at least once.
    pub required: &'static [CharClass],
    /// How many of the four classes must appear (some rules say "3 of 4").
    pub min_classes: usize,
    /// The special characters the database accepts; `None` means any ASCII punctuation.
    pub specials: Option<&'static str>,
}

impl PasswordRules {
    /// Checks a password. The error names the broken part of the rule, never the password.
    pub fn check(&self, password: &str) -> Result<(), String> {
        let len = password.chars().count();
        if len < self.min_len || len > self.max_len {
            return Err(format!(
                "{len} characters, outside {}..={} ({})",
                self.min_len, self.max_len, self.source
            ));
        }
        let mut seen = Vec::new();
        for c in password.chars() {
            if !c.is_ascii_graphic() {
                return Err(format!(
                    "a character outside printable ASCII ({})",
                    self.source
                ));
            }
            let class = CharClass::of(c);
            if class == CharClass::Special
                && let Some(allowed) = self.specials
                && !allowed.contains(c)
            {
                return Err(format!(
                    "the special character {c:?} is not among {allowed:?} ({})",
                    self.source
                ));
            }
            if !seen.contains(&class) {
                seen.push(class);
            }
        }
        if let Some(missing) = self.required.iter().find(|c| !seen.contains(c)) {
            return Err(format!("no {} ({})", missing.name(), self.source));
        }
        if seen.len() < self.min_classes {
            return Err(format!(
                "{} character classes, fewer than {} ({})",
                seen.len(),
                self.min_classes,
                self.source
            ));
        }
        Ok(())
    }
}

/// MySQL's `validate_password` MEDIUM policy (MySQL 5.7/8.0, TiDB's copy of it), which is
/// what most MySQL-family servers enforce when a DBA turns checking on: at least 8
/// characters, one of each class, any punctuation.
pub const MYSQL_MEDIUM: PasswordRules = PasswordRules {
    source: "validate_password policy MEDIUM",
    min_len: 8,
    max_len: 100,
    required: &[
        CharClass::Lower,
        CharClass::Upper,
        CharClass::Digit,
        CharClass::Special,
    ],
    min_classes: 4,
    specials: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: PasswordRules = PasswordRules {
        source: "test rule",
        min_len: 6,
        max_len: 10,
        required: &[CharClass::Digit],
        min_classes: 3,
        specials: Some("@#"),
    };

    #[test]
    fn checks_each_part_of_a_rule() {
        assert!(RULES.check("abC1@x").is_ok());
        assert!(RULES.check("abc1Ax").is_ok());
        assert!(RULES.check("abC1@").unwrap_err().contains("outside 6..=10"));
        assert!(RULES.check("abC1@xxxxxx").is_err());
        assert!(RULES.check("abC!1xx").unwrap_err().contains("'!'"));
        assert!(RULES.check("abCdef").unwrap_err().contains("no digit"));
        assert!(RULES.check("abc123").unwrap_err().contains("classes"));
        assert!(RULES.check("abC1@ü").unwrap_err().contains("printable"));
    }

    #[test]
    fn errors_never_contain_the_password() {
        let err = MYSQL_MEDIUM.check("secretpw").unwrap_err();
        assert!(!err.contains("secretpw"), "{err}");
    }

    #[test]
    fn common_policy_names_its_special_characters() {
        // The test in dbwarden parses this with the real policy parser; here only its shape.
        assert!(COMMON_POLICY.contains("length = 20"));
        assert!(COMMON_POLICY.contains("\"@#%^\""));
    }
}
