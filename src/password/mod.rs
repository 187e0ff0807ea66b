//! The password generator: passwords that follow a PasswordPolicy's lengths and character classes.
//!
//! Owns the character sets, the rules check and the generation itself. Randomness comes from the
//! operating system ([`OsRng`], getrandom), never from a seeded generator, except through
//! [`generate_with`], which tests use. Must not log, store or send passwords: [`Password`] redacts
//! itself in `Debug` and `Display`, and only [`Password::expose`] hands out the value.
//!
//! Every draw is uniform: lengths, characters and the shuffle use rand's [`Uniform`] distribution
//! (Lemire's method with rejection, so no modulo bias), and the final Fisher–Yates shuffle
//! spreads the one guaranteed character of each class over all positions.

use std::fmt;

use rand::distr::{Distribution, Uniform};
use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore, TryRngCore};

use crate::crd::PasswordPolicySpec;
use crate::crd::password_policy::MAX_PASSWORD_LENGTH;

/// Lower-case letters.
pub const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
/// Upper-case letters.
pub const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Digits.
pub const DIGITS: &[u8] = b"0123456789";
/// Special characters: printable ASCII punctuation without quotes (`'`, `"`, `` ` ``), backslash
/// and space, so that a password survives shells, YAML, JSON and connection strings unquoted
/// more often than not.
pub const SPECIAL: &[u8] = b"!#$%&()*+,-./:;<=>?@[]^_{|}~";

/// The lengths and character classes a password must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordRules {
    pub min_length: u32,
    pub max_length: u32,
    pub lower: bool,
    pub upper: bool,
    pub digits: bool,
    pub special: bool,
}

impl From<&PasswordPolicySpec> for PasswordRules {
    fn from(spec: &PasswordPolicySpec) -> Self {
        Self {
            min_length: spec.min_length(),
            max_length: spec.max_length(),
            lower: spec.lower(),
            upper: spec.upper(),
            digits: spec.numbers(),
            special: spec.special(),
        }
    }
}

/// Rules no password can satisfy, or no randomness to draw from. Messages name the
/// PasswordPolicy fields at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error(
        "no character class is enabled: enable at least one of spec.useLowerCase, spec.useUpperCase, spec.useNumbers, spec.useSpecialCharacters"
    )]
    NoCharacterClass,
    #[error("spec.passwordMinLength must be at least 1")]
    ZeroLength,
    #[error("{field} is {length}, above the longest supported password ({MAX_PASSWORD_LENGTH})")]
    TooLong { field: &'static str, length: u32 },
    #[error("spec.passwordMinLength ({min}) exceeds spec.passwordMaxLength ({max})")]
    MinAboveMax { min: u32, max: u32 },
    #[error(
        "spec.passwordMinLength ({min}) is shorter than the {classes} enabled character classes, each of which needs one character"
    )]
    MinBelowClasses { min: u32, classes: u32 },
    /// The operating system's random source failed; no password was made.
    #[error("the operating system's random number source failed: {0}")]
    Randomness(String),
}

impl PasswordRules {
    /// The character sets of the enabled classes, in a fixed order.
    pub fn classes(&self) -> Vec<&'static [u8]> {
        [
            (self.lower, LOWER),
            (self.upper, UPPER),
            (self.digits, DIGITS),
            (self.special, SPECIAL),
        ]
        .into_iter()
        .filter_map(|(enabled, set)| enabled.then_some(set))
        .collect()
    }

    /// Refuses rules no password can satisfy.
    pub fn check(&self) -> Result<(), RulesError> {
        let classes = self.classes().len() as u32;
        if classes == 0 {
            return Err(RulesError::NoCharacterClass);
        }
        if self.min_length == 0 {
            return Err(RulesError::ZeroLength);
        }
        for (field, length) in [
            ("spec.passwordMinLength", self.min_length),
            ("spec.passwordMaxLength", self.max_length),
        ] {
            if length > MAX_PASSWORD_LENGTH {
                return Err(RulesError::TooLong { field, length });
            }
        }
        if self.min_length > self.max_length {
            return Err(RulesError::MinAboveMax {
                min: self.min_length,
                max: self.max_length,
            });
        }
        if self.min_length < classes {
            return Err(RulesError::MinBelowClasses {
                min: self.min_length,
                classes,
            });
        }
        Ok(())
    }
}

/// A generated password. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The value, for the one place that must send it (the vault).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A fixed value, for plan tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn for_tests(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Generates a password from the operating system's random source.
pub fn generate(rules: &PasswordRules) -> Result<Password, RulesError> {
    rules.check()?;
    let mut rng = OsRandom::default();
    let password = generate_with(rules, &mut rng)?;
    match rng.failure {
        Some(reason) => Err(RulesError::Randomness(reason)),
        None => Ok(password),
    }
}

/// Generates a password from the given cryptographic generator (tests pass a seeded one).
pub fn generate_with<R: CryptoRng + ?Sized>(
    rules: &PasswordRules,
    rng: &mut R,
) -> Result<Password, RulesError> {
    let mut chars = draw_unshuffled(rules, rng)?;
    shuffle(&mut chars, rng);
    // Every byte comes from the ASCII sets above.
    Ok(Password(chars.into_iter().map(char::from).collect()))
}

/// Draws the length, one character of each enabled class, then the rest from all enabled
/// classes together. The guaranteed characters sit at the front until [`shuffle`] runs.
fn draw_unshuffled<R: RngCore + ?Sized>(
    rules: &PasswordRules,
    rng: &mut R,
) -> Result<Vec<u8>, RulesError> {
    rules.check()?;
    let classes = rules.classes();
    let length = uniform_inclusive(rules.min_length as usize, rules.max_length as usize, rng);
    let pool: Vec<u8> = classes.concat();
    let mut chars = Vec::with_capacity(length);
    for class in &classes {
        chars.push(pick(class, rng));
    }
    while chars.len() < length {
        chars.push(pick(&pool, rng));
    }
    Ok(chars)
}

/// Fisher–Yates (Durstenfeld): every permutation equally likely.
fn shuffle<R: RngCore + ?Sized>(chars: &mut [u8], rng: &mut R) {
    for i in (1..chars.len()).rev() {
        let j = uniform_inclusive(0, i, rng);
        chars.swap(i, j);
    }
}

fn pick<R: RngCore + ?Sized>(set: &[u8], rng: &mut R) -> u8 {
    set[uniform_inclusive(0, set.len() - 1, rng)]
}

/// A uniform draw from `low..=high` by rejection (no modulo bias). `low <= high` always holds
/// here: the rules were checked and the sets are not empty.
fn uniform_inclusive<R: RngCore + ?Sized>(low: usize, high: usize, rng: &mut R) -> usize {
    match Uniform::new_inclusive(low, high) {
        Ok(distribution) => distribution.sample(rng),
        Err(_) => low,
    }
}

/// The operating system's random source as an infallible `RngCore`: a failure is remembered
/// (and [`generate`] then refuses the password) instead of panicking as `UnwrapErr` would.
#[derive(Default)]
struct OsRandom {
    failure: Option<String>,
    /// After a failure: a changing filler, so rejection sampling still terminates (the result
    /// is thrown away).
    filler: u64,
}

impl OsRandom {
    fn fill(&mut self, dst: &mut [u8]) {
        if self.failure.is_none()
            && let Err(error) = OsRng.try_fill_bytes(dst)
        {
            self.failure = Some(error.to_string());
        }
        if self.failure.is_some() {
            for chunk in dst.chunks_mut(8) {
                self.filler = self.filler.wrapping_add(0x9E37_79B9_7F4A_7C15);
                chunk.copy_from_slice(&self.filler.to_le_bytes()[..chunk.len()]);
            }
        }
    }
}

impl RngCore for OsRandom {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.fill(dst);
    }
}

impl CryptoRng for OsRandom {}

#[cfg(test)]
mod tests;
