"""model.source=registry: the pull-model init container, its volumes and security context,
what the server serves, and the values that must be exact. The rendered objects of the
`registry` scenario are also linted and validated against the Kubernetes schemas with
every other ci/*-values.yaml scenario (test_chart_lint_validate.py)."""

from __future__ import annotations

import pytest

from .chartlib import RELEASE, Doc, Renderer, one

pytestmark = pytest.mark.chart

KEY_PATH = "/etc/modelport/verify-key/signing.pub"


def _stable(docs: list[Doc]) -> Doc:
    return one(docs, "Deployment", RELEASE)


def _env(c: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def _mounts(c: Doc) -> dict[str, Doc]:
    return {m["mountPath"]: m for m in c["volumeMounts"]}


def test_init_container_pulls_the_exact_versions(render: Renderer) -> None:
    pod = _stable(render("registry"))["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (server,) = pod["containers"]
    assert init["name"] == "pull-model"
    assert init["image"] == server["image"] == "modelport:1.0.0"
    assert init["command"] == [
        "python",
        "-m",
        "modelport.pull",
        "breast-cancer:q75l4jhmes4suax4",
        "diabetes:siodmehme2s3oax4",
        "--into",
        "/pull",
        "--bento-models",
        "/home/bentoml/bento/models",
    ]
    env = _env(init)
    assert env["MODELPORT_REGISTRY"] == "s3://ml-models/team-a"
    assert env["MODELPORT_REGISTRY_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["MODELPORT_VERIFY_KEY"] == KEY_PATH
    assert env["PYTHONPATH"] == "/home/bentoml/bento/src"
    assert init["envFrom"] == [{"secretRef": {"name": "modelport-registry"}}]
    # The server serves exactly what was pulled and never talks to the registry.
    assert (
        _env(server)["MODELPORT_MODELS"]
        == "breast-cancer:q75l4jhmes4suax4,diabetes:siodmehme2s3oax4"
    )
    assert _env(server)["MODELPORT_VERIFY_KEY"] == KEY_PATH
    assert "envFrom" not in server
    assert not any(k.startswith(("AWS_", "MODELPORT_REGISTRY")) for k in _env(server))


def test_init_container_has_the_servers_security_context_and_resources(render: Renderer) -> None:
    pod = _stable(render("registry"))["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (server,) = pod["containers"]
    assert init["securityContext"] == server["securityContext"]
    sc = init["securityContext"]
    assert sc["runAsNonRoot"] and sc["runAsUser"] == 1034 and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert init["resources"] == server["resources"]
    assert init["imagePullPolicy"] == server["imagePullPolicy"]


def test_volumes_pulled_models_reach_the_bento_store_read_only(render: Renderer) -> None:
    pod = _stable(render("registry"))["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (server,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"] == {"name": "models", "emptyDir": {"sizeLimit": "2Gi"}}
    assert volumes["verify-key"]["configMap"] == {
        "name": "modelport-signing",
        "items": [{"key": "signing.pub", "path": "signing.pub"}],
    }
    init_mounts, server_mounts = _mounts(init), _mounts(server)
    assert init_mounts["/pull"] == {"name": "models", "mountPath": "/pull"}  # writable
    # BentoML serves a bento's own model store when it has one, never BENTOML_HOME/models.
    assert server_mounts["/home/bentoml/bento/models"] == {
        "name": "models",
        "mountPath": "/home/bentoml/bento/models",
        "subPath": "models",
        "readOnly": True,
    }
    for mounts in (init_mounts, server_mounts):
        assert mounts["/etc/modelport/verify-key"]["readOnly"] is True
        assert mounts["/tmp"]["name"] == "writable"  # the same writable dirs as the server
    # Every writable mount of either container is an emptyDir: the root stays read-only.
    for m in [*init_mounts.values(), *server_mounts.values()]:
        if not m.get("readOnly"):
            assert "emptyDir" in volumes[m["name"]], m


def test_labels_and_change_cause_name_the_exact_version(render: Renderer) -> None:
    deploy = _stable(render("registry"))
    template = deploy["spec"]["template"]["metadata"]
    assert template["labels"]["modelport.io/model-version"] == "q75l4jhmes4suax4"
    assert template["annotations"]["modelport.io/model-source"] == "registry"
    assert deploy["metadata"]["annotations"]["kubernetes.io/change-cause"] == (
        "model breast-cancer:q75l4jhmes4suax4 from registry s3://ml-models/team-a "
        "(image modelport:1.0.0)"
    )


def test_new_model_version_changes_only_the_model_not_the_image(render: Renderer) -> None:
    """`helm upgrade --set model.version=NEW`: a new pod template (so a rollout) on the
    same image, pulling and serving the new version."""
    old = _stable(render("registry"))["spec"]["template"]
    new = _stable(render("registry", "--set", "model.version=newversion1"))["spec"]["template"]
    assert new != old
    assert new["spec"]["containers"][0]["image"] == old["spec"]["containers"][0]["image"]
    assert "breast-cancer:newversion1" in new["spec"]["initContainers"][0]["command"]
    assert _env(new["spec"]["containers"][0])["MODELPORT_MODELS"].startswith(
        "breast-cancer:newversion1,"
    )


def test_key_from_a_secret_and_identity_from_the_service_account(render: Renderer) -> None:
    docs = render(
        "registry",
        "--set",
        "verifyKey.configMapName=",
        "--set",
        "verifyKey.secretName=modelport-keys",
        "--set",
        "registry.credentialsSecret=",
    )
    pod = _stable(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["verify-key"]["secret"]["secretName"] == "modelport-keys"
    assert "envFrom" not in pod["initContainers"][0]
    sa = one(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/modelport-pull"
    }


def test_verify_key_applies_to_image_models_too(render: Renderer) -> None:
    pod = _stable(render(None, "--set", "verifyKey.secretName=keys"))["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    (server,) = pod["containers"]
    assert _env(server)["MODELPORT_VERIFY_KEY"] == KEY_PATH
    assert "MODELPORT_MODELS" not in _env(server)


def test_canary_pulls_its_own_version(render: Renderer) -> None:
    docs = render(
        "registry",
        "--set",
        "canary.enabled=true",
        "--set",
        "canary.model.version=canaryversion",
    )
    canary = one(docs, "Deployment", f"{RELEASE}-canary")["spec"]["template"]["spec"]
    assert "breast-cancer:canaryversion" in canary["initContainers"][0]["command"]
    assert _env(canary["containers"][0])["MODELPORT_MODELS"].startswith(
        "breast-cancer:canaryversion"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "model.version="], "model.source=registry needs model.version, an exact"),
        (["--set", "registry.bucket="], "model.source=registry needs registry.bucket"),
        (
            ["--set-json", 'model.extraModels=["diabetes"]'],
            '"diabetes" needs an exact version (name:version)',
        ),
        (["--set", "verifyKey.secretName=k"], "set either secretName or configMapName"),
    ],
)
def test_registry_values_that_cannot_work_fail_with_a_sentence(
    render: Renderer, args: list[str], message: str
) -> None:
    assert message in render.error("registry", *args)


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["--set", "model.source=s3"], "/model/source"),
        (["--set", "registry.bucket=Bad_Bucket"], "/registry/bucket"),
        (["--set", "registry.endpointUrl=minio:9000"], "/registry/endpointUrl"),
        (["--set", "registry.timeoutSeconds=0"], "/registry/timeoutSeconds"),
        (["--set", "registry.credentials=x"], "additional properties 'credentials' not allowed"),
        (["--set", "verifyKey.key=a/b"], "/verifyKey/key"),
    ],
)
def test_schema_rejects_registry_values(render: Renderer, args: list[str], where: str) -> None:
    from .chartlib import helm_version_major, schema_message

    error = render.error("registry", *args)
    message = where if where.startswith("additional") else f"at '{where}'"
    major = helm_version_major(render.helm)
    assert major is not None
    assert schema_message(message, major) in error, error
