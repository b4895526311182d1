"""modelport.image's pure parts (tags, backend choice, the containerize command) and the
tests' translation of the rendered Deployment into `podman run` arguments
(tests/image/podman.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from modelport import image
from tests.image import podman

pytestmark = pytest.mark.unit


def test_image_tag_is_the_bento_version() -> None:
    assert image.image_tag("modelport:abc123") == "modelport:abc123"
    assert image.image_tag("modelport:abc123", "registry.local/mp") == "registry.local/mp:abc123"
    for bad in ("modelport", "modelport:latest"):
        with pytest.raises(image.ImageError, match="exact bento tag"):
            image.image_tag(bad)


def test_base_image_and_its_storage_name() -> None:
    dockerfile = "# header\n\n# Block\nFROM python:3.11-slim AS base-container\nRUN x\nFROM y\n"
    assert image.base_image(dockerfile) == "python:3.11-slim"
    assert image.base_image("FROM --platform=linux/amd64 debian:12\n") == "debian:12"
    assert image.qualified("python:3.11-slim") == "docker.io/library/python:3.11-slim"
    assert image.qualified("bitnami/python:3.11") == "docker.io/bitnami/python:3.11"
    assert image.qualified("quay.io/org/py:1") == "quay.io/org/py:1"
    assert image.qualified("localhost:5000/py:1") == "localhost:5000/py:1"
    assert image.qualified("localhost/py:1") == "localhost/py:1"
    with pytest.raises(image.ImageError, match="no FROM"):
        image.base_image("RUN true\n")


@pytest.mark.parametrize(
    ("usable", "requested", "chosen"),
    [
        ({"docker": True, "podman": True, "buildah": True}, None, "docker"),
        ({"docker": False, "podman": True, "buildah": True}, None, "podman"),
        ({"docker": False, "podman": False, "buildah": True}, None, "buildah"),
        ({"docker": True, "podman": True, "buildah": True}, "buildah", "buildah"),
    ],
)
def test_backend_preference(usable: dict[str, bool], requested: str | None, chosen: str) -> None:
    assert image.choose_backend(usable, requested) == chosen


def test_backend_errors_say_what_to_do() -> None:
    with pytest.raises(image.ImageError, match="install podman or buildah"):
        image.choose_backend({"docker": False, "podman": False, "buildah": False})
    with pytest.raises(image.ImageError, match="no Docker daemon answers"):
        image.choose_backend({"docker": False, "buildah": True}, "docker")
    with pytest.raises(image.ImageError, match="unknown backend"):
        image.choose_backend({"docker": True}, "kaniko")


def test_containerize_command_daemonless_without_pulling(tmp_path: Path) -> None:
    cmd = image.containerize_command(
        "modelport:v1",
        ["modelport:v1", "modelport:latest"],
        "buildah",
        bentoml="/venv/bin/bentoml",
        pull=False,
        build_home=tmp_path,
    )
    assert cmd[:5] == ["/venv/bin/bentoml", "containerize", "modelport:v1", "--backend", "buildah"]
    assert cmd.count("--image-tag") == 2
    opts = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--opt"]
    assert opts == ["squash", "pull-never", f"volume={tmp_path.resolve()}:/root"]


def test_containerize_command_docker_gets_no_buildah_options(tmp_path: Path) -> None:
    cmd = image.containerize_command(
        "modelport:v1", ["modelport:v1"], "docker", pull=False, build_home=tmp_path
    )
    assert "--opt" not in cmd
    podman_pull = image.containerize_command("modelport:v1", ["modelport:v1"], "podman")
    assert [a for a in podman_pull if a.startswith("pull")] == []


def test_build_env_defaults_to_chroot_isolation_but_respects_the_caller() -> None:
    assert image.build_env("buildah", {})["BUILDAH_ISOLATION"] == "chroot"
    assert image.build_env("podman", {"BUILDAH_ISOLATION": "oci"})["BUILDAH_ISOLATION"] == "oci"
    assert "BUILDAH_ISOLATION" not in image.build_env("docker", {})


def test_build_home_configures_tls_from_the_system_store_and_holds_no_secrets() -> None:
    files = image.BUILD_HOME_FILES
    assert "native-tls = true" in files[".config/uv/uv.toml"]
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in files[".config/pip/pip.conf"]
    text = "".join(files.values()).lower()
    assert not any(word in text for word in ("password", "token", "index-url", "insecure"))


@pytest.mark.parametrize(("quantity", "cores"), [("500m", 0.5), ("1", 1.0), ("2.5", 2.5), (2, 2.0)])
def test_cpu_quantity(quantity: str | int, cores: float) -> None:
    assert podman.cpu_quantity(quantity) == cores


@pytest.mark.parametrize(
    ("quantity", "size"),
    [("1Gi", 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("1500k", 1_500_000), (1024, 1024)],
)
def test_memory_quantity(quantity: str | int, size: int) -> None:
    assert podman.memory_quantity(quantity) == size


def test_human_size() -> None:
    assert image.human_size("152 MB") == 152_000_000
    assert image.human_size("1.31 GB") == 1_310_000_000
    assert image.human_size("512 B") == 512


def test_probe_budget_uses_kubernetes_defaults() -> None:
    assert podman.probe_budget({"periodSeconds": 5, "failureThreshold": 60}) == 300
    assert podman.probe_budget({"initialDelaySeconds": 7}) == 37
    assert podman.pre_stop_seconds({"lifecycle": {"preStop": {"sleep": {"seconds": 4}}}}) == 4
    assert (
        podman.pre_stop_seconds(
            {"lifecycle": {"preStop": {"exec": {"command": ["/bin/sleep", "10"]}}}}
        )
        == 10
    )
    assert podman.pre_stop_seconds({}) == 0


def test_pre_stop_seconds_of_the_drain_hook() -> None:
    def hook(*command: str) -> dict[str, Any]:
        return {"lifecycle": {"preStop": {"exec": {"command": list(command)}}}}

    assert podman.pre_stop_seconds(hook("python", "-m", "modelport.drain", "--seconds", "10")) == 10
    assert podman.pre_stop_seconds(hook("python", "-m", "modelport.drain", "--seconds=2.5")) == 3
    assert podman.pre_stop_seconds(hook("/app/.venv/bin/python", "-m", "modelport.drain")) == 0
    with pytest.raises(image.ImageError, match="no known duration"):
        podman.pre_stop_seconds(hook("/bin/sh", "-c", "sleep 5"))


def _deployment() -> dict[str, Any]:
    """A pod template shaped like the chart's, small enough to vary by hand."""
    return {
        "spec": {
            "template": {
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1034, "fsGroup": 2000},
                    "terminationGracePeriodSeconds": 45,
                    "containers": [
                        {
                            "name": "modelport",
                            "image": "modelport:v1",
                            "securityContext": {
                                "runAsUser": 1034,
                                "runAsGroup": 1034,
                                "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "ports": [{"name": "http", "containerPort": 3000, "protocol": "TCP"}],
                            "env": [{"name": "BENTOML_PORT", "value": "3000"}],
                            "startupProbe": {
                                "httpGet": {"path": "/livez", "port": "http"},
                                "periodSeconds": 5,
                                "failureThreshold": 60,
                            },
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}},
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                            "volumeMounts": [
                                {"name": "writable", "mountPath": "/tmp", "subPath": "tmp"},
                                {
                                    "name": "writable",
                                    "mountPath": "/home/bentoml/tmp",
                                    "subPath": "h",
                                },
                            ],
                        }
                    ],
                    "volumes": [{"name": "writable", "emptyDir": {"sizeLimit": "1Gi"}}],
                }
            }
        }
    }


def _pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_deployment_becomes_podman_arguments() -> None:
    spec = podman.run_spec(_deployment())
    args = podman.podman_run_args(spec, name="mp", host_port=18000)
    assert args[0] == "run" and args[-1] == "modelport:v1"
    assert _pairs(args, "--user") == ["1034:1034"]
    assert _pairs(args, "--group-add") == ["2000"]  # fsGroup owns the emptyDir
    assert "--read-only" in args and "--read-only-tmpfs=false" in args
    assert [t.split(":")[0] for t in _pairs(args, "--tmpfs")] == ["/tmp", "/home/bentoml/tmp"]
    assert "--cap-drop=ALL" in args and not any(a.startswith("--cap-add") for a in args)
    assert "--security-opt=no-new-privileges" in args and "--privileged" not in args
    assert _pairs(args, "--env") == ["BENTOML_PORT=3000"]
    assert _pairs(args, "--publish") == ["127.0.0.1:18000:3000"]
    assert "--pull=missing" in args  # imagePullPolicy unset: IfNotPresent
    assert "--cpus=1" in args and f"--memory={2**30}" in args
    assert "--stop-timeout=35" in args  # 45 s grace minus the 10 s preStop pause
    assert (spec.startup_budget, spec.startup_path, spec.readiness_path) == (
        300,
        "/livez",
        "/readyz",
    )


def test_container_settings_override_the_pods() -> None:
    dep = _deployment()
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"] = {"runAsUser": 4242}
    c["imagePullPolicy"] = "Never"
    args = podman.podman_run_args(podman.run_spec(dep), name="mp", host_port=1)
    assert _pairs(args, "--user") == ["4242"]
    assert "--read-only" not in args and "--cap-drop=ALL" not in args
    assert "--security-opt=no-new-privileges" not in args and "--pull=never" in args


def test_only_the_charts_mounts_are_writable() -> None:
    dep = _deployment()
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["volumeMounts"] = c["volumeMounts"][1:]
    args = podman.podman_run_args(podman.run_spec(dep), name="mp", host_port=1)
    assert [t.split(":")[0] for t in _pairs(args, "--tmpfs")] == ["/home/bentoml/tmp"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c, p: c["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {}}}),
            "not a plain value",
        ),
        (
            lambda c, p: (
                p["volumes"].append({"name": "cfg", "configMap": {"name": "x"}})
                or c["volumeMounts"].append({"name": "cfg", "mountPath": "/cfg"})
            ),
            "not an emptyDir",
        ),
        (lambda c, p: c["securityContext"].update(runAsUser=0), "non-zero runAsUser"),
        (
            lambda c, p: c.update(readinessProbe={"exec": {"command": ["true"]}}),
            "only httpGet probes",
        ),
        (
            lambda c, p: c["securityContext"].update(seccompProfile={"type": "Localhost"}),
            "no podman equivalent",
        ),
    ],
)
def test_what_cannot_be_reproduced_is_an_error(change: Any, message: str) -> None:
    dep = copy.deepcopy(_deployment())
    pod = dep["spec"]["template"]["spec"]
    change(pod["containers"][0], pod)
    with pytest.raises(image.ImageError, match=message):
        podman.run_spec(dep)


def test_containers_conf_gives_containers_the_callers_limits() -> None:
    text = podman.containers_conf((1024, 20000), (4096, 32768))
    assert 'default_ulimits = ["nofile=1024:20000", "nproc=4096:32768"]' in text
    assert text.splitlines()[1] == "[containers]"


@pytest.mark.chart
def test_the_rendered_chart_translates(helm: str) -> None:
    """The real chart, rendered by helm: what the integration test will run."""
    from tests.chart.chartlib import Renderer, one

    dep = one(Renderer(helm)(None, "--set", "image.tag=v1"), "Deployment", "modelport")
    spec = podman.run_spec(dep, "modelport")
    assert spec.image == "modelport:v1" and spec.user == "1034:1034"
    assert spec.read_only and spec.cap_drop == ("ALL",) and spec.no_new_privileges
    assert "/tmp" in spec.writable and "/home/bentoml/prometheus_multiproc_dir" in spec.writable
    assert spec.env["BENTOML_PORT"] == str(spec.container_port)
    assert spec.startup_budget > 0
    # SIGTERM's budget is the grace period minus the drain hook's wait (45 - 10 by default).
    pod = dep["spec"]["template"]["spec"]
    hook = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert spec.stop_seconds == pod["terminationGracePeriodSeconds"] - int(hook[-1]) == 35
