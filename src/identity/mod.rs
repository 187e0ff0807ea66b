//! How the operator and each namespace log in to PrivX, and who PrivX says they are.
//!
//! - [`login`]: the operator's own login as the flags choose it (password, service-account
//!   token from a file or TokenRequest, signed JWT), resolved at start and kept current after
//!   every token renewal.
//! - [`self_roles`]: who the operator is and the roles it adds to what it writes.
//! - [`namespaces`]: the optional per-namespace identity (one PrivX client per namespace).
//!
//! Must not decide anything about VaultSecrets or PasswordPolicies: it only picks clients and
//! self roles, and says why when it cannot. Imports neither the controllers nor the runtime.

pub mod flags;
pub mod login;
pub mod namespaces;
pub mod self_roles;

pub use namespaces::{
    IdentityError, NamespaceIdentities, NamespaceIdentityConfig, NamespaceLogin, TokenRequestSource,
};
pub use self_roles::{
    HeldRoles, SelfRoles, SelfRolesSetting, SelfRolesState, VAULT_PERMISSIONS, choose_self_roles,
    whoami,
};
