//! The operator crate's modules import only down the layers, so no import cycle can form:
//!
//! ```text
//! runtime → controller (mod.rs), check
//!         → controller::vault_secret, controller::password_policy (never each other)
//!         → controller::core, identity (never each other)
//!         → password → crd → template
//! ```
//!
//! Every path to another module is read from the source (`crate::…`, and `super::…` resolved
//! against the file's own module), outside comments; each one that points up or sideways is a
//! violation, named with its file and line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layer of a unit: a unit may import only units of a lower layer.
fn layer(unit: &str) -> Option<u8> {
    Some(match unit {
        "template" => 0,
        "crd" => 1,
        "password" => 2,
        "identity" | "controller::core" => 3,
        "controller::vault_secret" | "controller::password_policy" => 4,
        "controller" | "check" => 5,
        "runtime" => 6,
        _ => return None,
    })
}

/// The unit a module path (`["controller", "vault_secret", "plan"]`) belongs to.
fn unit_of(module: &[String]) -> String {
    match module {
        [first, second, ..] if first == "controller" => format!("controller::{second}"),
        [first, ..] => first.clone(),
        [] => String::new(),
    }
}

/// The module path of a source file below `src/`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().expect("a file name");
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a line: what stands before a `//` comment (string contents are kept, which at
/// worst reports a path written in a string, never misses one in code).
fn code_of(line: &str) -> &str {
    line.split("//").next().unwrap_or_default()
}

/// The modules a line names, as module paths: `crate::a::b…` and `super::…::x…`.
fn referenced(line: &str, module: &[String]) -> Vec<Vec<String>> {
    let code = code_of(line);
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < code.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':';
        let rest = &code[i..];
        if starts_word && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let path: Vec<&str> = rest
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or_default()
                .split("::")
                .filter(|s| !s.is_empty())
                .collect();
            let mut target: Vec<String> = Vec::new();
            let mut segments = path.iter().peekable();
            if path.first() == Some(&"crate") {
                segments.next();
            } else {
                target = module.to_vec();
                while segments.peek() == Some(&&"super") {
                    segments.next();
                    target.pop();
                }
            }
            target.extend(segments.take(2).map(|s| s.to_string()));
            found.push(target);
            i += path.iter().map(|s| s.len() + 2).sum::<usize>();
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

#[test]
fn modules_import_only_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut units = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("below src");
        if relative == Path::new("main.rs") {
            continue; // the binary: a crate of its own, using this one from outside
        }
        let module = module_of(relative);
        let unit = unit_of(&module);
        if unit.is_empty() {
            continue; // lib.rs declares the modules
        }
        let Some(own) = layer(&unit) else {
            violations.push(format!(
                "{}: module {unit} has no layer: add it to tests/layering.rs",
                relative.display()
            ));
            continue;
        };
        units.insert(unit.clone());
        let text = std::fs::read_to_string(file).expect("readable source");
        for (number, line) in text.lines().enumerate() {
            for target in referenced(line, &module) {
                let target_unit = unit_of(&target);
                if target_unit == unit || target_unit.is_empty() {
                    continue;
                }
                match layer(&target_unit) {
                    Some(theirs) if theirs < own => {}
                    // `crate::controller::vault_secret` seen as `controller` plus one more
                    // segment is a controller unit; anything else unknown is not a module.
                    None => {}
                    Some(_) => violations.push(format!(
                        "{}:{}: {unit} imports {target_unit}: {}",
                        relative.display(),
                        number + 1,
                        line.trim()
                    )),
                }
            }
        }
    }
    // The check must be looking at the real tree: every layered unit has files.
    for unit in [
        "template",
        "crd",
        "password",
        "identity",
        "controller::core",
        "controller::vault_secret",
        "controller::password_policy",
        "check",
        "runtime",
    ] {
        assert!(units.contains(unit), "no source files found for {unit}");
    }
    assert!(
        violations.is_empty(),
        "imports against the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_reference_reader_resolves_crate_and_super_paths() {
    let module: Vec<String> = ["controller", "vault_secret", "plan"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let refs = referenced(
        "use crate::controller::core::{self, Stop}; use super::super::password_policy::x; // crate::runtime",
        &module,
    );
    let units: Vec<String> = refs.iter().map(|r| unit_of(r)).collect();
    assert_eq!(units, ["controller::core", "controller::password_policy"]);
    assert!(layer("controller::password_policy") == layer("controller::vault_secret"));
}
