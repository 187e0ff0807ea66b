//! Who the operator is in PrivX and its self roles: the roles added to every secret the operator
//! writes so that it can read back what it wrote. [`SelfRoles`] is a shared value: the runtime
//! resolves it at start and again after every token renewal ([`choose_self_roles`] is the rule,
//! documented in docs/security.md).

use std::sync::{Arc, RwLock};

use privx_client::{PrivxClient, PrivxError, Role};

/// PrivX permissions that make a held role a self role under `auto`.
pub const VAULT_PERMISSIONS: [&str; 2] = ["vault-add", "vault-manage"];

/// The operator's self roles: what is used now, and the configured ones PrivX says the
/// operator does not hold. Cheap to clone; clones share one value.
#[derive(Clone, Default)]
pub struct SelfRoles(Arc<RwLock<SelfRolesState>>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfRolesState {
    pub names: Vec<String>,
    /// Configured roles that PrivX says the operator does not hold (empty when unknown).
    pub not_held: Vec<String>,
}

impl std::fmt::Debug for SelfRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl From<Vec<String>> for SelfRoles {
    fn from(names: Vec<String>) -> Self {
        let roles = Self::default();
        roles.set(SelfRolesState {
            names,
            not_held: Vec::new(),
        });
        roles
    }
}

impl SelfRoles {
    pub fn get(&self) -> SelfRolesState {
        self.0.read().expect("self roles lock").clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.get().names
    }

    pub fn set(&self, state: SelfRolesState) {
        *self.0.write().expect("self roles lock") = state;
    }
}

/// `--privx-self-roles`: `auto`, or an explicit list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelfRolesSetting {
    Auto,
    Named(Vec<String>),
}

impl SelfRolesSetting {
    /// `[]` and `["auto"]` mean auto; anything else is the list.
    pub fn from_args(values: &[String]) -> Self {
        let values: Vec<String> = values
            .iter()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        match values.as_slice() {
            [] => Self::Auto,
            [one] if one.eq_ignore_ascii_case("auto") => Self::Auto,
            _ => Self::Named(values),
        }
    }
}

/// The roles a PrivX identity holds, and whether PrivX told their permissions (`roles/search`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldRoles {
    pub roles: Vec<Role>,
    pub permissions_known: bool,
}

/// The rule (pure): an explicit list wins, and its names PrivX says the operator does not hold
/// are reported; `auto` takes the held roles that carry a vault permission (`vault-add`,
/// `vault-manage`), or every held role when PrivX tells no permissions (older PrivX without
/// `roles/search`). `held` is `None` where PrivX cannot say who the operator is.
pub fn choose_self_roles(setting: &SelfRolesSetting, held: Option<&HeldRoles>) -> SelfRolesState {
    match (setting, held) {
        (SelfRolesSetting::Named(names), None) => SelfRolesState {
            names: names.clone(),
            not_held: Vec::new(),
        },
        (SelfRolesSetting::Named(names), Some(held)) => SelfRolesState {
            names: names.clone(),
            not_held: names
                .iter()
                .filter(|n| !held.roles.iter().any(|r| &r.name == *n))
                .cloned()
                .collect(),
        },
        (SelfRolesSetting::Auto, None) => SelfRolesState::default(),
        (SelfRolesSetting::Auto, Some(held)) => {
            let mut names: Vec<String> = held
                .roles
                .iter()
                .filter(|r| {
                    !held.permissions_known
                        || r.permissions
                            .iter()
                            .any(|p| VAULT_PERMISSIONS.contains(&p.as_str()))
                })
                .map(|r| r.name.clone())
                .collect();
            names.sort();
            names.dedup();
            SelfRolesState {
                names,
                not_held: Vec::new(),
            }
        }
    }
}

/// Who a PrivX client is: its user ID and the roles it holds with their permissions. `None`
/// where PrivX has no `users/current` (404/405).
pub async fn whoami(privx: &PrivxClient) -> Result<Option<(String, HeldRoles)>, PrivxError> {
    let Some(user) = privx.current_user().await? else {
        return Ok(None);
    };
    let names: Vec<String> = user.roles.iter().map(|r| r.name.clone()).collect();
    let held = match privx.search_roles(&names).await {
        Ok(found) => HeldRoles {
            roles: user
                .roles
                .iter()
                .map(|held| {
                    found
                        .iter()
                        .find(|f| f.id == held.id || f.name == held.name)
                        .cloned()
                        .unwrap_or_else(|| held.clone())
                })
                .collect(),
            permissions_known: true,
        },
        Err(e) if e.is_retryable() => return Err(e),
        // No roles/search (older PrivX): the roles without their permissions.
        Err(e) => {
            tracing::debug!(error = %e, "PrivX role search failed; self roles from names only");
            HeldRoles {
                roles: user.roles,
                permissions_known: false,
            }
        }
    };
    Ok(Some((user.id, held)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, permissions: &[&str]) -> Role {
        Role {
            id: format!("id-{name}"),
            name: name.into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn held(roles: Vec<Role>, permissions_known: bool) -> HeldRoles {
        HeldRoles {
            roles,
            permissions_known,
        }
    }

    #[test]
    fn auto_takes_the_held_roles_with_vault_permissions() {
        let held = held(
            vec![
                role("privx-operator", &["vault-add", "vault-manage"]),
                role("auditors", &["audit-view"]),
                role("readers", &[]),
                role("vault-writers", &["vault-add"]),
            ],
            true,
        );
        let state = choose_self_roles(&SelfRolesSetting::Auto, Some(&held));
        assert_eq!(state.names, ["privx-operator", "vault-writers"]);
        assert!(state.not_held.is_empty());
    }

    #[test]
    fn auto_without_permissions_takes_every_held_role_and_without_privx_none() {
        let unknown = held(vec![role("b", &[]), role("a", &[])], false);
        let state = choose_self_roles(&SelfRolesSetting::Auto, Some(&unknown));
        assert_eq!(state.names, ["a", "b"]);
        assert_eq!(
            choose_self_roles(&SelfRolesSetting::Auto, None),
            SelfRolesState::default()
        );
        assert!(
            choose_self_roles(
                &SelfRolesSetting::Auto,
                Some(&held(vec![role("x", &["audit"]), role("y", &[])], true))
            )
            .names
            .is_empty()
        );
    }

    #[test]
    fn an_explicit_list_wins_and_names_what_is_not_held() {
        let named = SelfRolesSetting::Named(vec!["ops".into(), "privx-operator".into()]);
        let held = held(vec![role("privx-operator", &["vault-add"])], true);
        let state = choose_self_roles(&named, Some(&held));
        assert_eq!(state.names, ["ops", "privx-operator"]);
        assert_eq!(state.not_held, ["ops"]);
        let unknown = choose_self_roles(&named, None);
        assert!(unknown.not_held.is_empty());
    }

    #[test]
    fn the_setting_reads_auto_and_lists() {
        assert_eq!(SelfRolesSetting::from_args(&[]), SelfRolesSetting::Auto);
        assert_eq!(
            SelfRolesSetting::from_args(&["AUTO".into()]),
            SelfRolesSetting::Auto
        );
        assert_eq!(
            SelfRolesSetting::from_args(&["a".into(), " ".into(), "b".into()]),
            SelfRolesSetting::Named(vec!["a".into(), "b".into()])
        );
    }
}
