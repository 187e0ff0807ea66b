"""Lint and render the Helm chart with real Helm, and validate every rendered manifest.

Run by `.ci/helm` inside its pinned virtual environment (helm-python-sdk: Helm v4 as a library;
kubernetes-validate: the Kubernetes OpenAPI schemas, offline). For every combination in
COMBINATIONS below this does what `helm lint --strict` and `helm template` do, then checks:

- every rendered object against the strict (no unknown fields) schema of Kubernetes
  KUBE_VERSION, the chart's CRDs as apiextensions.k8s.io/v1 CustomResourceDefinitions;
- the ServiceMonitor (monitoring.coreos.com/v1 is not a core kind, so no schema ships for it)
  against SERVICE_MONITOR_SCHEMA below, the subset of the Prometheus Operator's CRD the chart
  writes, with its metadata checked as a core ObjectMeta and its selector and port checked
  against the rendered metrics Service;
- that each combination renders the kinds it switches on, no object twice, and nothing broken;
- that wherever the operator may reconcile VaultSecrets (the ClusterRole cluster-wide, each
  listed namespace's Role otherwise) it may also `update` `vaultsecrets/finalizers`: mirrors
  carry owner references with blockOwnerDeletion, which OwnerReferencesPermissionEnforcement
  (on in OpenShift) refuses without that right.

Any finding fails the run (exit 1) with every finding listed. Adding a combination is one line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "privx-operator"
KUBE_VERSION = "1.37.0"
RELEASE = "privx-operator"
NAMESPACE = "privx-operator"

# Values every combination starts from: what docs/installation.md's `helm install` sets.
BASE: dict[str, Any] = {
    "image": {"repository": "registry.example.com/privx-operator"},
    "privx": {"url": "https://privx.example.com"},
}
NETWORK_POLICY = {
    "enabled": True,
    "apiServer": {"cidrs": ["10.0.0.1/32"]},
    "privx": {"cidrs": ["192.0.2.10/32"]},
}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
ALWAYS = {"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}

# (name, values over BASE, facts the render must show besides ALWAYS, facts it must not show).
# A fact is a kind, "rights:GROUP/RESOURCE" (some Role or ClusterRole grants it) or
# "arg:--FLAG" (the operator container is started with it); see facts().
COMBINATIONS: list[tuple[str, dict[str, Any], set[str], set[str]]] = [
    ("chart defaults", {}, {"rights:apps/deployments"}, {"NetworkPolicy", "ServiceMonitor", "PodDisruptionBudget", "arg:--leader-election", "rights:argoproj.io/rollouts", "rights:core/serviceaccounts/token"}),
    ("leader election by replica count", {"replicaCount": 3}, {"arg:--leader-election", "rights:coordination.k8s.io/leases"}, set()),
    ("leader election with one replica", {"leaderElection": {"enabled": True, "leaseName": "lease"}}, {"arg:--leader-election", "arg:--lease-name"}, set()),
    ("leader election off", {"leaderElection": {"enabled": False}}, set(), {"arg:--leader-election", "rights:coordination.k8s.io/leases"}),
    ("NetworkPolicy", {"networkPolicy": NETWORK_POLICY}, {"NetworkPolicy"}, set()),
    ("NetworkPolicy with scrapers", {"networkPolicy": {**NETWORK_POLICY, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}}, {"NetworkPolicy"}, set()),
    ("ServiceMonitor", {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}, {"ServiceMonitor"}, set()),
    ("PDB by maxUnavailable", {"podDisruptionBudget": {"enabled": True}}, {"PodDisruptionBudget"}, set()),
    ("PDB by minAvailable", {"replicaCount": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}, {"PodDisruptionBudget"}, set()),
    ("rollout restarts off", {"rolloutRestart": {"enabled": False}}, {"arg:--rollout-restart"}, {"rights:apps/deployments", "rights:apps/statefulsets", "rights:apps/daemonsets"}),
    ("watched namespaces listed", {"namespaces": ["team-a", "team-b"]}, {"Role", "RoleBinding", "arg:--namespaces"}, set()),
    ("credentials created by the chart", {"privx": {"credentials": {"create": True, "apiClientId": "id", "apiClientSecret": "s", "oauthClientSecret": "o"}}}, {"Secret"}, set()),
    ("existing credentials Secret", {"privx": {"credentials": {"existingSecret": "privx-api-client"}}}, set(), {"Secret"}),
    ("CA from PEM", {"privx": {"ca": {"pem": PEM}}}, {"ConfigMap", "arg:--privx-ca-file"}, {"arg:--privx-ca-only"}),
    ("CA-only trust from a Secret", {"privx": {"ca": {"existingSecret": "privx-ca", "only": True}}}, {"arg:--privx-ca-only"}, {"ConfigMap"}),
    ("self roles, v35, JSON logs", {"privx": {"selfRoles": ["k8s-operator"], "policyGeneration": "v35"}, "logFormat": "json"}, {"arg:--privx-self-roles"}, set()),
    ("no RBAC, own ServiceAccount", {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}}, set(), {"ClusterRole", "Role", "ServiceAccount"}),
    ("image digest and pod settings", {"image": {"repository": "r/p", "digest": "sha256:" + "a" * 64}, "podLabels": {"team": "x"}, "podAnnotations": {"a": "b"}, "tolerations": [{"key": "k", "operator": "Exists"}], "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}], "priorityClassName": "high"}, set(), set()),
    ("everything on", {"replicaCount": 3, "namespaces": ["team-a"], "networkPolicy": NETWORK_POLICY, "serviceMonitor": {"enabled": True}, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}, "privx": {"ca": {"pem": PEM, "only": True}}}, {"NetworkPolicy", "ServiceMonitor", "PodDisruptionBudget", "ConfigMap", "arg:--leader-election", "arg:--namespaces", "arg:--privx-ca-only"}, set()),
    ("auth: password (explicit)", {"privx": {"auth": {"mode": "password"}}}, {"arg:--privx-auth-mode"}, {"arg:--privx-token-file", "arg:--privx-jwt-key-file"}),
    ("auth: service-account token", {"privx": {"auth": {"mode": "serviceAccountToken", "clientId": "k8s", "scope": "privx"}}}, {"arg:--privx-auth-mode", "arg:--privx-token-file", "arg:--privx-login-client-id", "arg:--privx-login-scope"}, {"arg:--privx-jwt-key-file", "Secret"}),
    ("auth: signed JWT", {"privx": {"auth": {"mode": "signedJwt", "signedJwt": {"existingSecret": "privx-jwt-key", "issuer": "https://k8s.example", "subject": "privx-operator"}}}}, {"arg:--privx-auth-mode", "arg:--privx-jwt-key-file", "arg:--privx-jwt-issuer", "arg:--privx-jwt-subject"}, {"arg:--privx-token-file", "Secret"}),
    ("Argo Rollouts restarts, debounce", {"rolloutRestart": {"argoRollouts": True, "debounce": "10s"}}, {"rights:argoproj.io/rollouts", "arg:--rollout-restart-debounce"}, set()),
    ("per-namespace identity", {"privx": {"namespaceIdentity": {"enabled": True}}}, {"rights:core/serviceaccounts/token"}, set()),
    ("per-namespace identity, listed namespaces", {"namespaces": ["team-a"], "privx": {"auth": {"mode": "serviceAccountToken"}, "namespaceIdentity": {"enabled": True}}}, {"Role", "rights:core/serviceaccounts/token", "arg:--privx-token-file"}, set()),
]
# Each new switch of the chart gets its line above.
# ALWAYS does not hold where RBAC or the ServiceAccount is switched off.
OPTIONAL_ALWAYS = {"no RBAC, own ServiceAccount": {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"}}

# The part of monitoring.coreos.com/v1 ServiceMonitor (prometheus-operator's CRD) the chart
# writes; unknown fields are refused, as the CRD's structural schema would prune them.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                        },
                    },
                },
            },
        },
    },
}


def facts(objects: list[dict[str, Any]]) -> set[str]:
    found = {o.get("kind") for o in objects}
    for o in objects:
        if o.get("kind") in ("Role", "ClusterRole"):
            for rule in o.get("rules") or []:
                for group in rule.get("apiGroups", []):
                    found |= {f"rights:{group or 'core'}/{r}" for r in rule.get("resources", [])}
        if o.get("kind") == "Deployment":
            for container in o["spec"]["template"]["spec"]["containers"]:
                found |= {"arg:" + a.split("=")[0] for a in container.get("args", []) if a.startswith("--")}
    return found


def grants(role: dict[str, Any], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule.get("apiGroups", []) and resource in rule.get("resources", []) and verb in rule.get("verbs", [])
        for rule in role.get("rules") or []
    )


def check_finalizer_rights(what: str, values: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """Issue 13 item 11: update on vaultsecrets/finalizers wherever VaultSecrets are reconciled."""
    if values.get("rbac", {}).get("create", True) is False:
        return []
    group = "privx-operator.dev"
    roles = [o for o in objects if o.get("kind") in ("Role", "ClusterRole")]
    problems = []
    namespaces = values.get("namespaces") or []
    if namespaces:
        for ns in namespaces:
            reconciling = [r for r in roles if r["kind"] == "Role" and r["metadata"].get("namespace") == ns and grants(r, group, "vaultsecrets", "watch")]
            if not reconciling:
                problems.append(f"{what}: no Role in {ns} lets the operator watch VaultSecrets")
            elif not any(grants(r, group, "vaultsecrets/finalizers", "update") for r in reconciling):
                problems.append(f"{what}: the Role in {ns} lacks update on vaultsecrets/finalizers (owner references under OwnerReferencesPermissionEnforcement)")
    else:
        cluster = [r for r in roles if r["kind"] == "ClusterRole" and grants(r, group, "vaultsecrets", "watch")]
        if not cluster:
            problems.append(f"{what}: no ClusterRole lets the operator watch VaultSecrets")
        elif not any(grants(r, group, "vaultsecrets/finalizers", "update") for r in cluster):
            problems.append(f"{what}: the ClusterRole lacks update on vaultsecrets/finalizers (owner references under OwnerReferencesPermissionEnforcement)")
    return problems


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def validate_core(obj: dict[str, Any]) -> None:
    """Raises on an object that is not valid in Kubernetes KUBE_VERSION (strict)."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def check_service_monitor(monitor: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    problems = [f"ServiceMonitor: {e.json_path}: {e.message}" for e in jsonschema.Draft202012Validator(SERVICE_MONITOR_SCHEMA).iter_errors(monitor)]
    meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": monitor.get("metadata")}
    try:
        validate_core(meta)
    except kubernetes_validate.ValidationError as e:
        problems.append(f"ServiceMonitor metadata: {'.'.join(map(str, e.path))}: {e.message}")
    services = [o for o in objects if o["kind"] == "Service"]
    wanted = monitor.get("spec", {}).get("selector", {}).get("matchLabels", {})
    selected = [s for s in services if wanted and wanted.items() <= s["metadata"].get("labels", {}).items()]
    if len(selected) != 1:
        problems.append(f"ServiceMonitor selects {len(selected)} Services, not the metrics Service")
    else:
        ports = {p.get("name") for p in selected[0]["spec"]["ports"]}
        for endpoint in monitor["spec"].get("endpoints", []):
            if endpoint.get("port") not in ports:
                problems.append(f"ServiceMonitor scrapes port {endpoint.get('port')!r}; the Service has {sorted(ports)}")
    return problems


def check_objects(what: str, objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    seen = set()
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"), obj.get("metadata", {}).get("namespace"), obj.get("metadata", {}).get("name"))
        if key in seen:
            problems.append(f"{what}: {key} rendered twice")
        seen.add(key)
        if obj.get("apiVersion") == "monitoring.coreos.com/v1":
            problems += [f"{what}: {p}" for p in check_service_monitor(obj, objects)]
            continue
        try:
            validate_core(obj)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{what}: {obj.get('kind')}/{obj['metadata'].get('name')}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{what}: {e.message} (add a check for it here)")
    return problems


def render(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def lint(values: dict[str, Any]) -> list[str]:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v" + KUBE_VERSION)
    # Severity 1 is information ("icon is recommended"); 2 warning, 3 error: strict fails both.
    return report.get("errors", []) + [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2]


def self_test() -> list[str]:
    """The validators must refuse what a cluster refuses, or a green run proves nothing."""
    broken: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], list[str]]]] = [
        ("replicas as a word", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "two", "selector": {}, "template": {}}}, lambda o: check_objects("self-test", [o])),
        ("an unknown field", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}, lambda o: check_objects("self-test", [o])),
        ("a kind no schema knows", {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}}, lambda o: check_objects("self-test", [o])),
        ("a ServiceMonitor with a bad interval", {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"}, "spec": {"selector": {}, "endpoints": [{"port": "http", "interval": "30 seconds"}]}}, lambda o: check_objects("self-test", [o])),
    ]
    found = [f"self-test: {name} passed validation" for name, obj, check in broken if not check(obj)]
    no_finalizers = [{"kind": "ClusterRole", "metadata": {"name": "x"}, "rules": [{"apiGroups": ["privx-operator.dev"], "resources": ["vaultsecrets"], "verbs": ["watch"]}]}]
    if not check_finalizer_rights("self-test", {}, no_finalizers):
        found.append("self-test: a ClusterRole without update on vaultsecrets/finalizers passed")
    return found


def main() -> int:
    started = time.monotonic()
    print(f"helm-python-sdk {helm.helm_c_version()} (Helm {helm.helm_sdk_version()}), "
          f"kubernetes-validate {kubernetes_validate.__version__}, schemas of Kubernetes {KUBE_VERSION}")
    problems = self_test()
    objects_checked = 0
    with helm.Chart.load(CHART) as chart:
        crds = [yaml.safe_load(c["data"]) for c in chart.crds]
        if len(crds) != 2:
            problems.append(f"the chart holds {len(crds)} CRDs, expected 2")
        problems += check_objects("chart crds/", crds)
        objects_checked += len(crds)
        problems += [f"lint (chart defaults): {p}" for p in lint({})]
        for name, over, must, must_not in COMBINATIONS:
            values = merge(BASE, over)
            problems += [f"lint ({name}): {p}" for p in lint(values)]
            try:
                objects = render(chart, values)
            except helm.HelmError as e:
                problems.append(f"{name}: helm template failed: {e}")
                continue
            kinds = {o.get("kind") for o in objects}
            shown = facts(objects)
            expected = (ALWAYS - OPTIONAL_ALWAYS.get(name, set())) | must
            problems += [f"{name}: the render lacks {k}" for k in sorted(expected - shown)]
            problems += [f"{name}: the render has {k}" for k in sorted(must_not & shown)]
            problems += check_objects(name, objects)
            problems += check_finalizer_rights(name, values, objects)
            objects_checked += len(objects)
            print(f"  ok-so-far {name}: {len(objects)} objects ({', '.join(sorted(kinds))})")
    elapsed = time.monotonic() - started
    if problems:
        print(f"helm check FAILED ({len(problems)} problems):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"ok: helm lint --strict and helm template of {len(COMBINATIONS)} combinations, "
          f"{objects_checked} objects valid against Kubernetes {KUBE_VERSION}, in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
