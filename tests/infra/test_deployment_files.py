"""The deployment files in ``infra/``, checked offline (no container engine, no cluster here): the
Kubernetes manifests against the API's JSON schemas (``kubernetes-validate``, strict), the compose
file's structure, and every ``MANDATE_*`` variable they set against the settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mandate.api.routes import meta
from mandate.runtime.settings import Settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
K8S = INFRA / "k8s"
KUBERNETES_VERSION = "1.33.0"
SECRET_SETTINGS = {"MANDATE_DATABASE_URL", "MANDATE_VAULT_KEY", "MANDATE_PSEUDONYM_KEY", "MANDATE_AUDIT_SIGNING_KEY",
                   "MANDATE_AGENTS", "MANDATE_WEBHOOK_SECRET", "MANDATE_LLM_API_KEY", "MANDATE_FGA_API_TOKEN"}


def _manifests() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    names = [*kustomization["resources"], "secret.example.yaml"]
    return {name: yaml.safe_load((K8S / name).read_text()) for name in names}


def _settings_variables(text: str) -> set[str]:
    return set(re.findall(r"\bMANDATE_[A-Z_]+\b", text))


@pytest.mark.parametrize("name", sorted(_manifests()))
def test_manifest_is_valid_against_the_kubernetes_schema(name: str) -> None:
    kubernetes_validate.validate(_manifests()[name], KUBERNETES_VERSION, strict=True)


def test_deployment_probes_drain_and_secrets_by_reference() -> None:
    manifests = _manifests()
    pod = manifests["deployment.yaml"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    served = {route.path for route in meta.router.routes}  # type: ignore[attr-defined]
    assert container["livenessProbe"]["httpGet"]["path"] == "/ok" and "/ok" in served
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready" and "/ready" in served
    config = manifests["configmap.yaml"]["data"]
    assert pod["terminationGracePeriodSeconds"] > float(config["MANDATE_SHUTDOWN_GRACE_SECONDS"])
    assert {"configMapRef": {"name": "mandate-config"}} in container["envFrom"]
    assert {"secretRef": {"name": "mandate-secrets"}} in container["envFrom"]
    assert not SECRET_SETTINGS & set(config), "secrets live in the Secret, referenced by name"
    assert "secret.example.yaml" not in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert manifests["hpa.yaml"]["spec"]["minReplicas"] >= 2 and manifests["pdb.yaml"]["spec"]["maxUnavailable"] == 1


def test_compose_runs_replicas_behind_a_balancer_with_pinned_images_and_no_inline_secrets() -> None:
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "openfga", "keycloak", "collector", "jaeger", "mandate", "balancer"} <= set(services)
    assert services["mandate"]["deploy"]["replicas"] >= 2
    assert "mandate" in services["balancer"]["depends_on"]
    assert "server mandate:8000 resolve" in (INFRA / "nginx.conf").read_text()
    for name, service in services.items():
        image = service.get("image")
        assert image is None or (":" in image and not image.endswith(":latest")), name
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            assert not source.startswith(".") or (INFRA / source).exists(), (name, source)
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], (name, secret)
    assert not SECRET_SETTINGS & set(services["mandate"]["environment"])
    assert services["mandate"]["env_file"] == ["mandate.env"]


def test_every_variable_the_files_set_is_a_setting() -> None:
    known = {f"MANDATE_{name.upper()}" for name in Settings.model_fields}
    texts = [p.read_text() for p in (*K8S.glob("*.yaml"), INFRA / "compose.yaml", INFRA / "mandate.env.example")]
    used = set().union(*(_settings_variables(t) for t in texts))
    assert used and used <= known, sorted(used - known)
