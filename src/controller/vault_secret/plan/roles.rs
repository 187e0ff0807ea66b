//! The role IDs a written secret gets: the spec's roles (by id, or by name as PrivX resolved
//! them) plus the operator's own roles, sorted and deduplicated; a name PrivX does not know is
//! a refusal naming the field (pure: the look-up itself is done by the fetch step).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Refusal, SourceInput, reason};
use crate::controller::core::{Next, Stop};
use crate::crd::VaultSecretSpec;

/// How soon a spec naming an unknown role looks again (the role may be created meanwhile).
const UNKNOWN_ROLE_RETRY: Duration = Duration::from_secs(300);

/// The names the fetch step must resolve: the operator's own roles, then the spec's role names.
pub fn names_to_resolve(spec: &VaultSecretSpec, self_roles: &[String]) -> Vec<String> {
    let mut names: Vec<String> = self_roles.to_vec();
    for list in [&spec.read_roles, &spec.write_roles].into_iter().flatten() {
        names.extend(list.iter().filter_map(|r| r.name.clone()));
    }
    names
}

/// The desired read and write role IDs. A read-only object writes nothing and needs none
/// (validation refuses roles without a source before this runs).
pub fn role_ids(
    spec: &VaultSecretSpec,
    source: &SourceInput,
    self_roles: &[String],
    resolved: &BTreeMap<String, Option<String>>,
    refresh: Duration,
) -> Result<(Vec<String>, Vec<String>), Stop> {
    if matches!(source, SourceInput::ReadOnly) {
        return Ok((Vec::new(), Vec::new()));
    }
    let unknown = |message: String| {
        (
            Refusal::new(reason::INVALID_SPEC, message),
            Next::After(refresh.min(UNKNOWN_ROLE_RETRY)),
        )
    };
    let mut out = Vec::new();
    for (field, list) in [
        ("spec.readRoles", &spec.read_roles),
        ("spec.writeRoles", &spec.write_roles),
    ] {
        let mut ids = Vec::new();
        for (i, r) in list.iter().flatten().enumerate() {
            if let Some(id) = &r.id {
                ids.push(id.clone());
                continue;
            }
            let name = r.name.clone().unwrap_or_default();
            match resolved.get(&name).cloned().flatten() {
                Some(id) => ids.push(id),
                None => {
                    return Err(unknown(format!(
                        "{field}[{i}]: role {name:?} does not exist in PrivX"
                    )));
                }
            }
        }
        for name in self_roles {
            match resolved.get(name).cloned().flatten() {
                Some(id) => ids.push(id),
                None => {
                    return Err(unknown(format!(
                        "the operator's own role {name:?} (--privx-self-roles) does not exist in PrivX"
                    )));
                }
            }
        }
        ids.sort();
        ids.dedup();
        out.push(ids);
    }
    let write = out.pop().unwrap_or_default();
    let read = out.pop().unwrap_or_default();
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::vault_secret::RoleRef;

    fn spec(read: Vec<RoleRef>) -> VaultSecretSpec {
        VaultSecretSpec {
            read_roles: Some(read),
            ..Default::default()
        }
    }

    fn by_name(name: &str) -> RoleRef {
        RoleRef {
            name: Some(name.into()),
            id: None,
        }
    }

    fn source() -> SourceInput {
        SourceInput::Secret(Default::default())
    }

    #[test]
    fn names_resolve_to_ids_with_the_operators_own_roles_added() {
        let resolved = BTreeMap::from([
            ("app".to_string(), Some("id-app".to_string())),
            ("self".to_string(), Some("id-self".to_string())),
        ]);
        let s = spec(vec![by_name("app")]);
        let self_roles = ["self".to_string()];
        assert_eq!(names_to_resolve(&s, &self_roles), ["self", "app"]);
        let (read, write) = role_ids(
            &s,
            &source(),
            &self_roles,
            &resolved,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(read, ["id-app", "id-self"]);
        assert_eq!(write, ["id-self"]);
    }

    #[test]
    fn an_unknown_role_is_refused_naming_the_field_and_retried() {
        let resolved = BTreeMap::from([("ghost".to_string(), None)]);
        let s = spec(vec![
            RoleRef {
                name: None,
                id: Some("id-1".into()),
            },
            by_name("ghost"),
        ]);
        let (refusal, next) =
            role_ids(&s, &source(), &[], &resolved, Duration::from_secs(3600)).unwrap_err();
        assert_eq!(refusal.reason, reason::INVALID_SPEC);
        assert!(
            refusal
                .message
                .starts_with("spec.readRoles[1]: role \"ghost\""),
            "{}",
            refusal.message
        );
        assert!(matches!(next, Next::After(d) if d == UNKNOWN_ROLE_RETRY));
        // The operator's own role missing is named as such.
        let (refusal, _) = role_ids(
            &VaultSecretSpec::default(),
            &source(),
            &["self".to_string()],
            &BTreeMap::new(),
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(
            refusal.message.contains("--privx-self-roles"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn a_read_only_object_needs_no_roles() {
        let s = spec(vec![by_name("ghost")]);
        let (read, write) = role_ids(
            &s,
            &SourceInput::ReadOnly,
            &["self".into()],
            &BTreeMap::new(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(read.is_empty() && write.is_empty());
    }
}
