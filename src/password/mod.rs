//! Password generator (placeholder until the generator branch lands).

/// A generated password; never shown by Debug or Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
    #[cfg(test)]
    pub(crate) fn for_tests(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordRules {
    pub min_length: u32,
    pub max_length: u32,
    pub lower: bool,
    pub upper: bool,
    pub digits: bool,
    pub special: bool,
}

impl From<&crate::crd::PasswordPolicySpec> for PasswordRules {
    fn from(s: &crate::crd::PasswordPolicySpec) -> Self {
        Self {
            min_length: s.min_length(),
            max_length: s.max_length(),
            lower: s.lower(),
            upper: s.upper(),
            digits: s.numbers(),
            special: s.special(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(String);

pub fn generate(rules: &PasswordRules) -> Result<Password, RulesError> {
    use rand::Rng;
    let n = rules.min_length.max(4) as usize;
    Ok(Password(
        (0..n)
            .map(|_| rand::rng().random_range(b'a'..=b'z') as char)
            .collect(),
    ))
}
