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
- the PrometheusRule against PROMETHEUS_RULE_SCHEMA (the part of the CRD the chart writes) and
  its rule groups with `promtool check rules` and `promtool test rules`
  (.ci/prometheus-rules-test.yaml: each alert fires on the operator's series, and not on another
  release's; Debian's prometheus package, which `.ci/helm` installs), the Grafana dashboard ConfigMap's JSON as a dashboard whose queries all name this
  release's job;
- that the CRDs render from the templates (so `helm upgrade` upgrades them), carry
  `helm.sh/resource-policy: keep` unless `crds.keep` is false, and are the two generated ones;
- that values the templates refuse (FAILURES) fail the render with a message naming the value;
- that hook and test pods are not selected by the operator's Service, NetworkPolicy or PDB;
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

import json
import shutil
import subprocess
import tempfile

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
ALWAYS = {"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Job", "Pod", "crd:kept", "tenant-roles"}

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
    ("image digest and pod settings", {"image": {"repository": "registry.example.com/p", "digest": "sha256:" + "a" * 64}, "podLabels": {"team": "x"}, "podAnnotations": {"a": "b"}, "tolerations": [{"key": "k", "operator": "Exists"}], "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}], "priorityClassName": "high"}, set(), set()),
    ("everything on", {"replicaCount": 3, "namespaces": ["team-a"], "networkPolicy": {**NETWORK_POLICY, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}, "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}, "privx": {"ca": {"pem": PEM, "only": True}}}, {"NetworkPolicy", "ServiceMonitor", "PrometheusRule", "dashboard", "PodDisruptionBudget", "ConfigMap", "arg:--leader-election", "arg:--namespaces", "arg:--privx-ca-only"}, set()),
    ("auth: password (explicit)", {"privx": {"auth": {"mode": "password"}}}, {"arg:--privx-auth-mode"}, {"arg:--privx-token-file", "arg:--privx-jwt-key-file"}),
    ("auth: service-account token", {"privx": {"auth": {"mode": "serviceAccountToken", "clientId": "k8s", "scope": "privx"}}}, {"arg:--privx-auth-mode", "arg:--privx-token-file", "arg:--privx-login-client-id", "arg:--privx-login-scope"}, {"arg:--privx-jwt-key-file", "Secret"}),
    ("auth: signed JWT", {"privx": {"auth": {"mode": "signedJwt", "signedJwt": {"existingSecret": "privx-jwt-key", "issuer": "https://k8s.example", "subject": "privx-operator"}}}}, {"arg:--privx-auth-mode", "arg:--privx-jwt-key-file", "arg:--privx-jwt-issuer", "arg:--privx-jwt-subject"}, {"arg:--privx-token-file", "Secret"}),
    ("Argo Rollouts restarts, debounce", {"rolloutRestart": {"argoRollouts": True, "debounce": "10s"}}, {"rights:argoproj.io/rollouts", "arg:--rollout-restart-debounce"}, set()),
    ("per-namespace identity", {"privx": {"namespaceIdentity": {"enabled": True}}}, {"rights:core/serviceaccounts/token"}, set()),
    ("CRDs not installed by the release", {"crds": {"install": False}}, set(), {"CustomResourceDefinition"}),
    ("CRDs deleted on uninstall", {"crds": {"keep": False}}, {"CustomResourceDefinition"}, {"crd:kept"}),
    ("CRDs with Argo CD's keep annotations", {"crds": {"annotations": {"argocd.argoproj.io/sync-options": "Prune=false,Delete=false"}}}, {"CustomResourceDefinition", "crd:kept"}, set()),
    ("tenant roles off", {"rbac": {"aggregateToView": False, "aggregateToEdit": False}}, set(), {"tenant-roles"}),
    ("uninstall check and helm test off", {"uninstallCheck": {"enabled": False}, "tests": {"enabled": False}}, set(), {"Job", "Pod"}),
    ("uninstall check, listed namespaces", {"namespaces": ["team-a", "team-b"]}, {"Job", "Role", "arg:--namespaces"}, set()),
    ("PrometheusRule", {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "additionalRules": [{"alert": "PrivxOperatorCustom", "expr": "vector(0) > 1", "for": "5m"}]}}, {"PrometheusRule"}, set()),
    ("Grafana dashboard", {"grafanaDashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "Operators"}}}, {"ConfigMap", "dashboard"}, set()),
    ("extension points", {
        "extraArgs": ["--privx-token-expiration=15m"],
        "extraVolumes": [{"name": "extra", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
        "extraObjects": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{{ .Release.Name }}-extra"}, "data": {"a": "b"}},
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ include \"privx-operator.fullname\" . }}-extra\nstringData:\n  x: y\n",
        ],
        "hostAliases": [{"ip": "192.0.2.10", "hostnames": ["privx.example.com"]}],
        "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]},
        "deploymentAnnotations": {"example.com/owner": "platform"},
        "revisionHistoryLimit": 2,
    }, {"ConfigMap", "Secret", "extension-points"}, set()),
    ("per-namespace identity, listed namespaces", {"namespaces": ["team-a"], "privx": {"auth": {"mode": "serviceAccountToken"}, "namespaceIdentity": {"enabled": True}}}, {"Role", "rights:core/serviceaccounts/token", "arg:--privx-token-file"}, set()),
    ("a second release: PasswordPolicies only, selected", {"controllers": ["passwordpolicy"], "selector": "privx-operator.dev/release=b", "crds": {"install": False}}, {"arg:--controllers", "arg:--selector"}, {"CustomResourceDefinition"}),
]
# Each new switch of the chart gets its line above.
# ALWAYS does not hold where RBAC or the ServiceAccount is switched off.
OPTIONAL_ALWAYS = {
    "no RBAC, own ServiceAccount": {"ClusterRole", "ClusterRoleBinding", "ServiceAccount", "tenant-roles", "Job"},
    "CRDs not installed by the release": {"CustomResourceDefinition", "crd:kept"},
    "CRDs deleted on uninstall": {"crd:kept"},
    "tenant roles off": {"tenant-roles"},
    "uninstall check and helm test off": {"Job", "Pod"},
    "a second release: PasswordPolicies only, selected": {"CustomResourceDefinition", "crd:kept"},
}

# Values the templates must refuse: (name, values over BASE, text the failure must contain).
FAILURES: list[tuple[str, dict[str, Any], str]] = [
    ("image repository without a registry host", {"image": {"repository": "privx-operator"}}, "image.repository"),
    ("Docker Hub shorthand without a host", {"image": {"repository": "someone/privx-operator"}}, "image.repository"),
    ("no image repository", {"image": {"repository": ""}}, "image.repository is required"),
    ("an unknown controller", {"controllers": ["vaultsecrets"]}, "controllers"),
]
# Repositories the templates accept (a registry host: a dot, a port or localhost).
ACCEPTED_REPOSITORIES = ["registry.example.com/privx-operator", "localhost:5000/privx-operator", "docker.io/someone/privx-operator", "localhost/p"]

# Prometheus' own series the alerts may use besides the operator's.
PROMETHEUS_SERIES = {"up"}

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


PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": DURATION},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "minLength": 1},
                                        "record": {"type": "string", "minLength": 1},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": {"type": "string", "pattern": DURATION},
                                        "keep_firing_for": {"type": "string", "pattern": DURATION},
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def hook_kind(o: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (o.get("metadata", {}).get("annotations") or {})


def facts(objects: list[dict[str, Any]]) -> set[str]:
    found = {o.get("kind") for o in objects}
    crds = [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
    if crds and all((o["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep" for o in crds):
        found.add("crd:kept")
    for o in objects:
        labels = o.get("metadata", {}).get("labels") or {}
        if o.get("kind") == "ClusterRole" and labels.get("rbac.authorization.k8s.io/aggregate-to-view") == "true":
            found.add("tenant-roles")
        if o.get("kind") == "ConfigMap" and labels.get("grafana_dashboard") == "1":
            found.add("dashboard")
        if o.get("kind") == "Deployment":
            pod = o["spec"]["template"]["spec"]
            container = pod["containers"][0]
            if (pod.get("hostAliases") and pod.get("dnsConfig") and o["spec"].get("revisionHistoryLimit") == 2
                    and (o["metadata"].get("annotations") or {}).get("example.com/owner")
                    and any(v["name"] == "extra" for v in pod["volumes"])
                    and any(m["name"] == "extra" for m in container["volumeMounts"])
                    and container["args"][-1] == "--privx-token-expiration=15m"):
                found.add("extension-points")
    for o in objects:
        if o.get("kind") in ("Role", "ClusterRole"):
            for rule in o.get("rules") or []:
                for group in rule.get("apiGroups", []):
                    found |= {f"rights:{group or 'core'}/{r}" for r in rule.get("resources", [])}
        if o.get("kind") == "Deployment" and not hook_kind(o):
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


# promtool unit tests of the shipped alerts (each fires on the operator's series and only on
# this release's); they name the rendered rule file rules.yaml.
RULE_TESTS = REPO / ".ci" / "prometheus-rules-test.yaml"


def promtool_check(groups: dict[str, Any]) -> list[str]:
    """`promtool check rules` on the rule groups, as Prometheus would load them, then
    `promtool test rules` with RULE_TESTS."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return ["promtool is not on PATH (.ci/helm installs Debian's prometheus package)"]
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(yaml.safe_dump(groups))
        shutil.copy(RULE_TESTS, Path(tmp) / "tests.yaml")
        result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
        if result.returncode != 0:
            return [f"promtool check rules: {(result.stdout + result.stderr).strip()}"]
        result = subprocess.run([promtool, "test", "rules", "tests.yaml"], capture_output=True, text=True, cwd=tmp)
        if result.returncode != 0:
            return [f"promtool test rules ({RULE_TESTS.relative_to(REPO)}): {(result.stdout + result.stderr).strip()}"]
    return []


def check_prometheus_rule(rule: dict[str, Any]) -> list[str]:
    problems = [f"PrometheusRule: {e.json_path}: {e.message}" for e in jsonschema.Draft202012Validator(PROMETHEUS_RULE_SCHEMA).iter_errors(rule)]
    if problems:
        return problems
    problems += promtool_check(rule["spec"])
    job = f'job="{RELEASE}-metrics", namespace="{NAMESPACE}"'
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            if r.get("alert", "").startswith("PrivxOperatorCustom"):
                continue
            if job not in str(r["expr"]):
                problems.append(f"PrometheusRule: {r.get('alert')}: the expression does not select this release's series ({job})")
    return problems


def check_dashboard(config_map: dict[str, Any]) -> list[str]:
    problems = []
    try:
        dashboard = json.loads(config_map["data"]["privx-operator.json"])
    except (KeyError, json.JSONDecodeError) as e:
        return [f"dashboard ConfigMap: not the dashboard JSON: {e}"]
    panels = dashboard.get("panels") or []
    if not panels:
        problems.append("dashboard: no panels")
    names = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    if not {"datasource", "namespace", "job"} <= names:
        problems.append(f"dashboard: variables {sorted(names)} lack datasource, namespace or job")
    for panel in panels:
        for target in panel.get("targets", []):
            if 'job=~"$job", namespace=~"$namespace"' not in target.get("expr", ""):
                problems.append(f"dashboard: panel {panel.get('title')!r} queries without the job and namespace variables")
    return problems


def check_crds(what: str, objects: list[dict[str, Any]]) -> list[str]:
    """The rendered CRDs are the generated files (metadata aside) and carry the release's labels."""
    problems = []
    rendered = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "CustomResourceDefinition"}
    if not rendered:
        return problems
    files = {}
    for path in sorted((CHART / "files" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        files[crd["metadata"]["name"]] = crd
    if set(rendered) != set(files):
        problems.append(f"{what}: rendered CRDs {sorted(rendered)} are not the files {sorted(files)}")
    for name, crd in rendered.items():
        if name in files and crd["spec"] != files[name]["spec"]:
            problems.append(f"{what}: CRD {name}: spec differs from files/crds/")
        labels = crd["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/managed-by") != "Helm" or "app.kubernetes.io/name" in labels:
            problems.append(f"{what}: CRD {name}: labels {labels}")
    return problems


def check_hook_pods(what: str, objects: list[dict[str, Any]]) -> list[str]:
    """The operator's Service (and so its NetworkPolicy and PDB, same labels) must not select
    hook or test pods; hook pods run the binary's own subcommands."""
    problems = []
    services = [o for o in objects if o.get("kind") == "Service"]
    selectors = [s["spec"]["selector"] for s in services]
    for o in objects:
        if not hook_kind(o):
            continue
        if o["kind"] == "Pod":
            spec, labels = o["spec"], o["metadata"].get("labels") or {}
        elif o["kind"] == "Job":
            spec, labels = o["spec"]["template"]["spec"], o["spec"]["template"]["metadata"].get("labels") or {}
        else:
            continue
        for selector in selectors:
            if selector.items() <= labels.items():
                problems.append(f"{what}: the metrics Service selects the hook {o['kind']} {o['metadata']['name']}")
        args = spec["containers"][0].get("args", [])
        if not args or args[0] not in ("probe", "uninstall-check"):
            problems.append(f"{what}: hook {o['kind']} {o['metadata']['name']} runs {args}")
    return problems


def check_objects(what: str, objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    seen = set()
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"), obj.get("metadata", {}).get("namespace"), obj.get("metadata", {}).get("name"))
        if key in seen:
            problems.append(f"{what}: {key} rendered twice")
        seen.add(key)
        if obj.get("kind") == "ServiceMonitor":
            problems += [f"{what}: {p}" for p in check_service_monitor(obj, objects)]
            continue
        if obj.get("kind") == "PrometheusRule":
            problems += [f"{what}: {p}" for p in check_prometheus_rule(obj)]
            meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata")}
            try:
                validate_core(meta)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{what}: PrometheusRule metadata: {e.message}")
            continue
        if obj.get("kind") == "ConfigMap" and "privx-operator.json" in (obj.get("data") or {}):
            problems += [f"{what}: {p}" for p in check_dashboard(obj)]
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
    broken_rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"}, "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(rate(x[5m]) > "}]}]}}
    broken.append(("a PrometheusRule whose PromQL does not parse", broken_rule, lambda o: check_objects("self-test", [o])))
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
        if chart.crds:
            problems.append(f"the chart's crds/ holds {len(chart.crds)} files: Helm never upgrades those; the CRDs are templates (files/crds/)")
        # helm lint ignores `fail` (it only logs it); the render of the chart defaults, which
        # lack image.repository on purpose, must fail naming it.
        problems += [f"lint (chart defaults): {p}" for p in lint({})]
        try:
            render(chart, {"privx": {"url": "https://privx.example.com"}})
            problems.append("chart defaults: rendered without image.repository")
        except helm.HelmError as e:
            if "image.repository is required" not in str(e):
                problems.append(f"chart defaults: the failure does not name image.repository: {e}")
        for name, over, needle in FAILURES:
            try:
                render(chart, merge(BASE, over))
                problems.append(f"{name}: rendered, expected a failure naming {needle!r}")
            except helm.HelmError as e:
                if needle not in str(e):
                    problems.append(f"{name}: the failure does not name {needle!r}: {e}")
        for repository in ACCEPTED_REPOSITORIES:
            try:
                render(chart, merge(BASE, {"image": {"repository": repository}}))
            except helm.HelmError as e:
                problems.append(f"image.repository {repository!r} refused: {e}")
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
            problems += check_crds(name, objects)
            problems += check_hook_pods(name, objects)
            objects_checked += len(objects)
            print(f"  ok-so-far {name}: {len(objects)} objects ({', '.join(sorted(kinds))})")
    elapsed = time.monotonic() - started
    if problems:
        print(f"helm check FAILED ({len(problems)} problems):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"ok: helm lint --strict and helm template of {len(COMBINATIONS)} combinations and {len(FAILURES)} refused values, "
          f"{objects_checked} objects valid against Kubernetes {KUBE_VERSION}, in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
