//! The committed CRDs are exactly what the binary generates, and every CEL rule compiles.

use privx_operator::crd::schema::crd_schema;
use privx_operator::crd::{all_crds, crd_file_name, crd_yaml, crds_yaml};

#[test]
fn committed_crds_are_fresh() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for crd in all_crds() {
        let path = dir.join(crd_file_name(&crd));
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -- crd --out-dir crds`",
                path.display()
            )
        });
        assert_eq!(
            committed,
            crd_yaml(&crd),
            "{} is stale; run `cargo run -- crd --out-dir crds`",
            path.display()
        );
    }
}

#[test]
fn crd_stream_holds_both_kinds() {
    let stream = crds_yaml();
    assert_eq!(stream.matches("kind: CustomResourceDefinition").count(), 2);
    assert!(stream.contains("name: vaultsecrets.privx-operator.dev"));
    assert!(stream.contains("name: passwordpolicies.privx-operator.dev"));
}

#[test]
fn every_cel_rule_compiles() {
    let mut rules = 0;
    for crd in all_crds() {
        for version in &crd.spec.versions {
            let schema = crd_schema(&crd, &version.name).expect("every version has a schema");
            rules += serde_json::to_string(&schema)
                .unwrap()
                .matches("\"rule\"")
                .count();
            let compiled = kube::core::cel::compile_schema(&schema);
            let errors: Vec<String> = compiled
                .compilation_errors()
                .iter()
                .map(|e| format!("{e:?}"))
                .collect();
            assert!(
                errors.is_empty(),
                "{}: {errors:#?}",
                crd.metadata.name.as_deref().unwrap()
            );
        }
    }
    assert!(
        rules >= 15,
        "expected the CEL rules to be in the schema, found {rules}"
    );
}

#[test]
fn no_schema_defaults_that_gitops_would_see_as_drift() {
    for crd in all_crds() {
        let json = serde_json::to_value(&crd).unwrap();
        let text = serde_json::to_string(&json).unwrap();
        assert!(
            !text.contains("\"default\":"),
            "{} has a schema default",
            crd.metadata.name.as_deref().unwrap()
        );
    }
}
