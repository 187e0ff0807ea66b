//! The example manifests, shared by the offline example test and the e2e suite.

use std::path::Path;

/// Every file in `examples/`, PasswordPolicies first (VaultSecrets generate passwords to them).
pub fn example_files() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort_by_key(|f| (!f.starts_with("passwordpolicy"), f.clone()));
    assert!(files.len() >= 7, "examples: {files:?}");
    files
}
