use std::collections::HashMap;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

fn rules(min: u32, max: u32, classes: [bool; 4]) -> PasswordRules {
    PasswordRules {
        min_length: min,
        max_length: max,
        lower: classes[0],
        upper: classes[1],
        digits: classes[2],
        special: classes[3],
    }
}

const ALL: [bool; 4] = [true; 4];

/// Does `password` follow the rules: length within bounds, only characters of enabled classes,
/// at least one of each enabled class?
fn satisfies(rules: &PasswordRules, password: &str) -> bool {
    let length = password.chars().count();
    if length < rules.min_length as usize || length > rules.max_length as usize {
        return false;
    }
    let classes = rules.classes();
    let bytes = password.as_bytes();
    let all_allowed =
        password.is_ascii() && bytes.iter().all(|b| classes.iter().any(|c| c.contains(b)));
    all_allowed
        && classes
            .iter()
            .all(|class| bytes.iter().any(|b| class.contains(b)))
}

#[test]
fn special_set_has_no_quotes_backslash_or_space_and_classes_are_disjoint() {
    for forbidden in [b'\'', b'"', b'`', b'\\', b' '] {
        assert!(!SPECIAL.contains(&forbidden), "{}", forbidden as char);
    }
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SPECIAL].concat();
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "a character is in two classes");
    assert!(all.iter().all(|b| b.is_ascii_graphic()));
}

#[test]
fn rules_follow_the_policy_with_its_defaults() {
    let spec = PasswordPolicySpec {
        use_special_characters: Some(false),
        password_max_length: Some(20),
        ..Default::default()
    };
    assert_eq!(
        PasswordRules::from(&spec),
        rules(16, 20, [true, true, true, false])
    );
}

#[test]
fn impossible_rules_are_refused_naming_the_fields() {
    let cases = [
        (
            rules(8, 16, [false; 4]),
            RulesError::NoCharacterClass,
            "spec.useLowerCase",
        ),
        (
            rules(0, 16, ALL),
            RulesError::ZeroLength,
            "spec.passwordMinLength",
        ),
        (
            rules(8, 5000, ALL),
            RulesError::TooLong {
                field: "spec.passwordMaxLength",
                length: 5000,
            },
            "spec.passwordMaxLength",
        ),
        (
            rules(5000, 6000, ALL),
            RulesError::TooLong {
                field: "spec.passwordMinLength",
                length: 5000,
            },
            "spec.passwordMinLength",
        ),
        (
            rules(20, 10, ALL),
            RulesError::MinAboveMax { min: 20, max: 10 },
            "spec.passwordMaxLength (10)",
        ),
        (
            rules(3, 10, ALL),
            RulesError::MinBelowClasses { min: 3, classes: 4 },
            "spec.passwordMinLength (3)",
        ),
    ];
    for (rules, expected, field) in cases {
        let error = generate(&rules).expect_err(field);
        assert_eq!(error, expected, "{rules:?}");
        assert!(error.to_string().contains(field), "{error}");
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(generate_with(&rules, &mut rng), Err(error));
    }
    assert!(generate(&rules(2, 2, [true, false, true, false])).is_ok());
}

#[test]
fn os_random_passwords_follow_the_rules_and_differ() {
    let rules = rules(24, 40, ALL);
    let first = generate(&rules).unwrap();
    let second = generate(&rules).unwrap();
    assert!(
        satisfies(&rules, first.expose()),
        "generated password breaks its rules"
    );
    assert!(satisfies(&rules, second.expose()));
    // 24+ characters from 90: a collision means the randomness is broken.
    assert_ne!(first.expose(), second.expose());
}

#[test]
fn password_never_shows_in_debug_or_display() {
    let password = generate(&rules(32, 32, ALL)).unwrap();
    let value = password.expose().to_string();
    for shown in [
        format!("{password:?}"),
        format!("{password}"),
        format!("{:?}", Some(&password)),
        format!("{:#?}", vec![password.clone()]),
    ] {
        assert!(!shown.contains(&value), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}

#[test]
fn satisfies_checks_length_classes_and_alphabet() {
    let r = rules(4, 6, [true, true, true, false]);
    assert!(satisfies(&r, "aB3x"));
    assert!(!satisfies(&r, "aB3"), "too short");
    assert!(!satisfies(&r, "aB3xxxx"), "too long");
    assert!(!satisfies(&r, "abc3"), "no upper case");
    assert!(!satisfies(&r, "aB3!"), "special not enabled");
    assert!(!satisfies(&r, "aB3é"), "not in any class");
    assert!(!satisfies(&r, "aB3 "), "space is in no class");
}

fn valid_rules() -> impl Strategy<Value = PasswordRules> {
    (1u8..16, 0u32..=64, 0u32..=64).prop_map(|(mask, extra_min, extra_max)| {
        let classes = [mask & 1 != 0, mask & 2 != 0, mask & 4 != 0, mask & 8 != 0];
        let needed = classes.iter().filter(|c| **c).count() as u32;
        let min = needed + extra_min;
        rules(min, min + extra_max, classes)
    })
}

proptest! {
    #[test]
    fn every_generated_password_satisfies_its_rules(rules in valid_rules(), seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let password = generate_with(&rules, &mut rng).unwrap();
        prop_assert!(satisfies(&rules, password.expose()), "{:?}", rules);
        let from_os = generate(&rules).unwrap();
        prop_assert!(satisfies(&rules, from_os.expose()), "{:?}", rules);
    }
}

// ---- Statistics -------------------------------------------------------------------------------
//
// Tolerance: a chi-square statistic is accepted below the critical value of its degrees of
// freedom at an upper-tail probability of about 1e-6 (z = 4.75), computed with the
// Wilson–Hilferty approximation. The sample is fixed (SAMPLES passwords of LENGTH characters,
// every expected cell count in the hundreds or more, so the chi-square approximation holds),
// and the generator is seeded, so the test is deterministic; the threshold says how far from
// the expected counts a correct generator may plausibly land. `statistics_detect_bias` shows
// the same tests reject a generator without the final shuffle.

const SAMPLES: usize = 20_000;
const LENGTH: usize = 12;

fn chi_square_critical(degrees_of_freedom: usize) -> f64 {
    let k = degrees_of_freedom as f64;
    let z = 4.75;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

fn chi_square(observed: &[f64], expected: &[f64]) -> f64 {
    observed
        .iter()
        .zip(expected)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum()
}

/// Problems found in a sample of passwords of [`LENGTH`] with all four classes enabled.
fn bias_findings(sample: &[Vec<u8>]) -> Vec<String> {
    let classes = [LOWER, UPPER, DIGITS, SPECIAL];
    let pool: usize = classes.iter().map(|c| c.len()).sum();
    let guaranteed = classes.len() as f64;
    let free = LENGTH as f64 - guaranteed;
    let n = sample.len() as f64;
    let mut findings = Vec::new();

    // Characters: each class contributes one guaranteed character spread over its members,
    // the free positions draw from the whole pool.
    let mut counts: HashMap<u8, f64> = HashMap::new();
    for password in sample {
        for &b in password {
            *counts.entry(b).or_default() += 1.0;
        }
    }
    let (mut observed, mut expected) = (Vec::new(), Vec::new());
    for class in classes {
        for b in class {
            observed.push(counts.get(b).copied().unwrap_or(0.0));
            expected.push(n * (1.0 / class.len() as f64 + free / pool as f64));
        }
    }
    let statistic = chi_square(&observed, &expected);
    let critical = chi_square_critical(observed.len() - 1);
    if statistic > critical {
        findings.push(format!("characters: chi² {statistic:.1} > {critical:.1}"));
    }

    // Positions: after a uniform shuffle every position has the same class distribution.
    for position in 0..LENGTH {
        let mut observed = [0.0; 4];
        for password in sample {
            let class = classes
                .iter()
                .position(|c| c.contains(&password[position]))
                .unwrap();
            observed[class] += 1.0;
        }
        let expected: Vec<f64> = classes
            .iter()
            .map(|c| n * (1.0 + free * c.len() as f64 / pool as f64) / LENGTH as f64)
            .collect();
        let statistic = chi_square(&observed, &expected);
        let critical = chi_square_critical(3);
        if statistic > critical {
            findings.push(format!(
                "position {position}: chi² {statistic:.1} > {critical:.1}"
            ));
        }
    }
    findings
}

fn fixed_length_rules() -> PasswordRules {
    rules(LENGTH as u32, LENGTH as u32, ALL)
}

#[test]
fn no_class_character_or_position_bias() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let sample: Vec<Vec<u8>> = (0..SAMPLES)
        .map(|_| {
            generate_with(&fixed_length_rules(), &mut rng)
                .unwrap()
                .expose()
                .as_bytes()
                .to_vec()
        })
        .collect();
    let findings = bias_findings(&sample);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn statistics_detect_bias() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let unshuffled: Vec<Vec<u8>> = (0..SAMPLES)
        .map(|_| draw_unshuffled(&fixed_length_rules(), &mut rng).unwrap())
        .collect();
    let findings = bias_findings(&unshuffled);
    // The first four positions always hold lower, upper, digit, special.
    for position in 0..4 {
        assert!(
            findings
                .iter()
                .any(|f| f.starts_with(&format!("position {position}:"))),
            "{findings:#?}"
        );
    }
}

#[test]
fn lengths_are_uniform_within_bounds() {
    let (min, max) = (8u32, 15u32);
    let mut rng = StdRng::seed_from_u64(7);
    let mut counts = vec![0.0; (max - min + 1) as usize];
    for _ in 0..SAMPLES {
        let password = generate_with(&rules(min, max, ALL), &mut rng).unwrap();
        counts[password.expose().len() - min as usize] += 1.0;
    }
    let expected = vec![SAMPLES as f64 / counts.len() as f64; counts.len()];
    let statistic = chi_square(&counts, &expected);
    assert!(
        statistic < chi_square_critical(counts.len() - 1),
        "{counts:?}: chi² {statistic:.1}"
    );
}

#[test]
fn policies_the_validator_accepts_can_generate_passwords() {
    for yaml in [
        "maxVersions: 1",
        "maxVersions: 1\npasswordMinLength: 1\npasswordMaxLength: 1\nuseLowerCase: false\nuseUpperCase: false\nuseSpecialCharacters: false",
        "maxVersions: 1\npasswordMaxLength: 1024\npasswordMinLength: 1024",
        "maxVersions: 1\npasswordMinLength: 4",
    ] {
        let spec: crate::crd::PasswordPolicySpec =
            serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert!(
            crate::crd::validate::validate_password_policy(&spec).is_empty(),
            "{yaml}"
        );
        assert!(generate(&PasswordRules::from(&spec)).is_ok(), "{yaml}");
    }
}
