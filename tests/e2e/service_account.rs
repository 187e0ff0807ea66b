//! The e2e harness's service-account mode (issue 11): the operator runs with no static
//! credentials at all. Its Kubernetes identity is a ServiceAccount of the test's namespace with
//! the RBAC the chart grants for `namespaces: [<ns>]` and `privx.auth.mode:
//! serviceAccountToken` (plus `create` on its own `serviceaccounts/token`, limited by
//! `resourceNames`), and its PrivX login is a TokenRequest token of that ServiceAccount,
//! exchanged at `POST /auth/api/v1/token/login` with a simulator that trusts the cluster's own
//! service-account issuer and keys, read from the API server (`/.well-known/openid-configuration`,
//! its `jwks_uri`).
//!
//! Owns only setup and its cleanup (the cluster-scoped RBAC objects carry the suite's
//! namespace label; the namespaced ones go with the namespace). Asserts nothing.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use privx_sim::{SeedIssuer, SeedSubject, SeedUser, demo_seed};
use serde_json::{Value, json};

/// The operator's ServiceAccount in the test's namespace.
pub const SERVICE_ACCOUNT: &str = "privx-operator";
/// The audience of the tokens exchanged at PrivX (the operator's `--privx-token-audience`).
pub const AUDIENCE: &str = "privx-e2e";
const FIELD_MANAGER: &str = "privx-operator-e2e";

/// The cluster's service-account token issuer, as its API server publishes it.
#[derive(Debug, Clone)]
pub struct ClusterIssuer {
    pub issuer: String,
    pub jwks: Value,
}

/// Reads `/.well-known/openid-configuration` (`issuer`, `jwks_uri`) and the JWKS through the
/// cluster's API (the path of `jwks_uri`; its host may not be reachable from here).
pub async fn cluster_issuer(client: &Client) -> ClusterIssuer {
    let get = |path: String| async move {
        let request = http::Request::get(path.as_str())
            .body(Vec::new())
            .expect("a GET request");
        client.request_text(request).await.unwrap_or_else(|e| {
            panic!("reading {path} from the cluster (service-account issuer discovery): {e}")
        })
    };
    let discovery: Value =
        serde_json::from_str(&get("/.well-known/openid-configuration".to_string()).await)
            .expect("the OpenID configuration is JSON");
    let issuer = discovery["issuer"]
        .as_str()
        .expect("the OpenID configuration names its issuer")
        .to_string();
    let jwks_path = discovery["jwks_uri"]
        .as_str()
        .and_then(|uri| url::Url::parse(uri).ok())
        .map(|uri| uri.path().to_string())
        .unwrap_or_else(|| "/openid/v1/jwks".to_string());
    let jwks: Value = serde_json::from_str(&get(jwks_path.clone()).await)
        .unwrap_or_else(|e| panic!("{jwks_path} is not JSON: {e}"));
    assert!(
        jwks["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{jwks_path} holds no keys"
    );
    ClusterIssuer { issuer, jwks }
}

/// The PrivX user the operator's ServiceAccount maps to: not the operator's API client, so
/// that "did the operator create this?" must compare with the identity that logged in.
pub const SA_USER_ID: &str = "20000000-0000-4000-8000-0000000000e2";
pub const SA_USER_NAME: &str = "privx-operator-sa";

/// The demo seed, trusting `issuer` for [`AUDIENCE`], its ServiceAccount token subject mapped
/// to the PrivX user [`SA_USER_NAME`] (holding the operator's role), not to the operator's API
/// client.
pub fn seed_trusting(issuer: &ClusterIssuer, namespace: &str) -> Value {
    let mut seed = demo_seed();
    seed.users.push(SeedUser {
        id: SA_USER_ID.into(),
        username: SA_USER_NAME.into(),
        roles: vec!["privx-operator".into()],
    });
    seed.trusted_issuers = vec![SeedIssuer {
        issuer: issuer.issuer.clone(),
        audience: AUDIENCE.into(),
        jwks: Some(issuer.jwks.clone()),
        public_key_pem: None,
        ed_alg_name: None,
        subjects: vec![SeedSubject {
            subject: format!("system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"),
            api_client: None,
            user: Some(SA_USER_NAME.into()),
        }],
    }];
    serde_json::to_value(&seed).expect("a seed serialises")
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

/// Name of the cluster-scoped RBAC objects of one test.
pub fn cluster_rbac_name(namespace: &str) -> String {
    format!("{namespace}-operator")
}

/// Creates the operator's ServiceAccount and its RBAC, and returns a Kubernetes API token of
/// that ServiceAccount (for the operator's kubeconfig; its PrivX token it requests itself).
pub async fn create_identity(client: &Client, namespace: &str, label: &str) -> String {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let labels = json!({ label: namespace });
    let subject =
        json!([{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]);
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .patch(
            SERVICE_ACCOUNT,
            &apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace}})),
        )
        .await
        .expect("creating the operator's ServiceAccount");

    // The chart's Role for a listed namespace, plus the chart's `-self` Role (the operator's
    // own namespace is the test's) and TokenRequest for its own ServiceAccount only.
    let role_rules = json!([
        rule(&["privx-operator.dev"], &["vaultsecrets"], &["get", "list", "watch", "patch"]),
        rule(&["privx-operator.dev"], &["vaultsecrets/status"], &["get", "patch"]),
        rule(&["privx-operator.dev"], &["vaultsecrets/finalizers"], &["update"]),
        rule(&[""], &["secrets"], &["get", "list", "watch", "create", "patch", "delete"]),
        rule(&[""], &["configmaps"], &["get"]),
        rule(&["apps"], &["deployments", "statefulsets", "daemonsets"], &["get", "patch"]),
        {"apiGroups": [""], "resources": ["serviceaccounts/token"],
         "resourceNames": [SERVICE_ACCOUNT], "verbs": ["create"]},
    ]);
    let name = SERVICE_ACCOUNT;
    Api::<Role>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &apply,
            &Patch::Apply(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": namespace}, "rules": role_rules}),
            ),
        )
        .await
        .expect("creating the operator's Role");
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &apply,
            &Patch::Apply(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject}),
            ),
        )
        .await
        .expect("creating the operator's RoleBinding");

    // The chart's ClusterRole when namespaces are listed: what is cluster-scoped.
    let cluster_rules = json!([
        rule(
            &["privx-operator.dev"],
            &["passwordpolicies"],
            &["get", "list", "watch", "patch"]
        ),
        rule(
            &["privx-operator.dev"],
            &["passwordpolicies/status"],
            &["get", "patch"]
        ),
        rule(&[""], &["namespaces"], &["get", "list", "watch"]),
        rule(&[""], &["events"], &["create", "patch"]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        rule(
            &["apiextensions.k8s.io"],
            &["customresourcedefinitions"],
            &["get", "list", "watch"]
        ),
    ]);
    let cluster_name = cluster_rbac_name(namespace);
    Api::<ClusterRole>::all(client.clone())
        .patch(
            &cluster_name,
            &apply,
            &Patch::Apply(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": cluster_name, "labels": labels}, "rules": cluster_rules}),
            ),
        )
        .await
        .expect("creating the operator's ClusterRole (needs cluster-admin)");
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(
            &cluster_name,
            &apply,
            &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": cluster_name, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
                "subjects": subject})),
        )
        .await
        .expect("creating the operator's ClusterRoleBinding");

    // A token for the Kubernetes API (default audience), long enough for one test.
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .expect("a Kubernetes API token of the operator's ServiceAccount")
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .expect("the TokenRequest answer holds a token")
}

/// A one-context kubeconfig (as JSON) whose user is the bearer `token`.
pub fn with_token_user(mut kubeconfig: Value, token: &str) -> Value {
    let user = kubeconfig["contexts"][0]["context"]["user"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| SERVICE_ACCOUNT.to_string());
    kubeconfig["contexts"][0]["context"]["user"] = json!(user);
    kubeconfig["users"] = json!([{"name": user, "user": {"token": token}}]);
    kubeconfig
}

/// Deletes the cluster-scoped RBAC objects a test of `namespace` created.
pub async fn cleanup(client: &Client, namespace: &str, label: &str) -> Result<(), String> {
    let mine = ListParams::default().labels(&format!("{label}={namespace}"));
    let mut problems = Vec::new();
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for b in bindings.list(&mine).await.map_err(|e| e.to_string())? {
        let name = b.metadata.name.unwrap_or_default();
        if let Err(e) = bindings.delete(&name, &DeleteParams::default()).await {
            problems.push(format!("ClusterRoleBinding {name}: {e}"));
        }
    }
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for r in roles.list(&mine).await.map_err(|e| e.to_string())? {
        let name = r.metadata.name.unwrap_or_default();
        if let Err(e) = roles.delete(&name, &DeleteParams::default()).await {
            problems.push(format!("ClusterRole {name}: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
