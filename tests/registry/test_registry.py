"""The model registry against a real S3 protocol server on loopback (moto's standalone
server), reached over HTTP by boto3; signatures with OpenSSF model-signing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelport import server as srv
from modelport.registry import RegistryError
from modelport.signing import SIGNATURE_KEY
from tests.registry.conftest import CREDENTIALS, UNSET, Keys, copy_model, start_moto

pytestmark = [pytest.mark.integration]

RECIPE = "breast-cancer"


def _tag(model_dir: Path) -> str:
    return f"{model_dir.parent.name}:{model_dir.name}"


def _sign(model_dir: Path, keys: Keys) -> None:
    from modelport.signing import sign_model

    sign_model(model_dir, keys.private)


def _objects(raw_s3: Any, registry: Any, model_dir: Path) -> tuple[str, dict[str, Any]]:
    """The upload prefix and marker of a published version, read as an outsider would."""
    name, version = model_dir.parent.name, model_dir.name
    key = f"{registry.location.prefix}{name}/{version}/published.json"
    marker = json.loads(raw_s3.get_object(Bucket="models", Key=key)["Body"].read())
    return f"{registry.location.prefix}{name}/{version}/u-{marker['upload']}", marker


def _put_marker(raw_s3: Any, registry: Any, marker: dict[str, Any]) -> None:
    key = f"{registry.location.prefix}{marker['name']}/{marker['version']}/published.json"
    raw_s3.put_object(Bucket="models", Key=key, Body=json.dumps(marker).encode())


def _rewrite_info(raw_s3: Any, registry: Any, model_dir: Path, change: Any) -> None:
    """Edit the published model.yaml and fix up the marker's hash of it (an attacker with
    write access to the bucket)."""
    base, marker = _objects(raw_s3, registry, model_dir)
    body = raw_s3.get_object(Bucket="models", Key=f"{base}/model.yaml")["Body"].read()
    info = yaml.safe_load(body)
    change(info)
    new = yaml.safe_dump(info, sort_keys=False).encode()
    raw_s3.put_object(Bucket="models", Key=f"{base}/model.yaml", Body=new)
    marker["info_sha256"] = hashlib.sha256(new).hexdigest()
    _put_marker(raw_s3, registry, marker)


def _store_is_clean(home: Path) -> bool:
    leftovers = [p.name for p in home.glob(".modelport-pull-*")]
    models = list((home / "models").glob("*/*/model.yaml")) if (home / "models").exists() else []
    return not leftovers and not models


def test_push_pull_round_trip(trained, registry, src_home, tmp_path, keys) -> None:
    model_dir = copy_model(trained, RECIPE, src_home)
    _sign(model_dir, keys)
    url = registry.push(model_dir)
    assert url == f"{registry.location.url}/{_tag(model_dir).replace(':', '/')}"

    [listed] = registry.versions()
    assert listed.tag == _tag(model_dir) and listed.marker["signed"] is True
    assert listed.marker["metrics"]["accuracy"] > 0.9

    home = tmp_path / "dst"
    tag, downloaded = registry.pull(RECIPE, home, keys.public)  # NAME alone: newest push
    assert (tag, downloaded) == (_tag(model_dir), True)
    pulled = home / "models" / RECIPE / model_dir.name
    for f in model_dir.iterdir():
        if f.name != "model.yaml":
            assert (pulled / f.name).read_bytes() == f.read_bytes()
    info = yaml.safe_load((pulled / "model.yaml").read_text())
    assert "stage" not in info["labels"]  # a local label; aliases rule across machines
    assert info["metadata"][SIGNATURE_KEY]
    assert not list(home.glob(".modelport-pull-*"))
    # Pulling again is a no-op that still verifies what is there.
    assert registry.pull(tag, home, keys.public) == (tag, False)


def test_published_version_is_never_overwritten(trained, registry, src_home) -> None:
    model_dir = copy_model(trained, RECIPE, src_home)
    registry.push(model_dir)
    with pytest.raises(RegistryError, match="never overwritten"):
        registry.push(model_dir)


def test_concurrent_pushes(trained, registry, src_home, raw_s3) -> None:
    # Different versions at once: both published.
    dirs = [copy_model(trained, RECIPE, src_home, f"v{i}") for i in range(2)]
    errors: list[BaseException] = []

    def push(d: Path) -> None:
        try:
            registry.push(d)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(d,)) for d in dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {v.version for v in registry.versions(RECIPE)} == {"v0", "v1"}

    # The same version twice, both staged before either publishes: one wins, the
    # loser's objects are gone and never mixed into the winner's.
    same = copy_model(trained, RECIPE, src_home, "v2")
    first, second = registry.stage(same), registry.stage(same)
    registry.publish(first)
    with pytest.raises(RegistryError, match="published by another push"):
        registry.publish(second)
    prefix = f"{registry.location.prefix}{RECIPE}/v2/"
    keys = [o["Key"] for o in raw_s3.list_objects_v2(Bucket="models", Prefix=prefix)["Contents"]]
    assert keys and all(f"u-{second['upload']}" not in k for k in keys)
    _, marker = _objects(raw_s3, registry, same)
    assert marker["upload"] == first["upload"]


def test_half_finished_push_is_invisible(trained, registry, src_home, tmp_path) -> None:
    model_dir = copy_model(trained, RECIPE, src_home)
    registry.stage(model_dir)  # uploaded, never published (the pusher died)
    assert registry.versions() == []
    home = tmp_path / "dst"
    with pytest.raises(RegistryError, match=f"no model '{RECIPE}'"):
        registry.pull(RECIPE, home)
    with pytest.raises(RegistryError, match="no such version or alias"):
        registry.pull(_tag(model_dir), home)
    assert _store_is_clean(home)
    registry.push(model_dir)  # the abandoned upload does not block the version
    assert registry.pull(_tag(model_dir), home)[1] is True


def test_aliases(trained, registry, src_home) -> None:
    a, b = (copy_model(trained, RECIPE, src_home, v) for v in ("va", "vb"))
    registry.push(a)
    registry.push(b)
    assert registry.set_alias(f"{RECIPE}:va", "production") == ("va", None)
    assert registry.set_alias(f"{RECIPE}:vb", "candidate") == ("vb", None)
    assert registry.resolve(RECIPE) == (RECIPE, "va")  # NAME: its production alias
    assert registry.resolve(f"{RECIPE}:candidate") == (RECIPE, "vb")
    assert registry.set_alias(f"{RECIPE}:vb", "production") == ("vb", "va")  # promote
    assert registry.resolve(f"{RECIPE}:production") == (RECIPE, "vb")
    listed = {v.version: v.aliases for v in registry.versions(RECIPE)}
    assert listed == {"va": [], "vb": ["candidate", "production"]}
    with pytest.raises(RegistryError, match=r"no such version or alias .*versions: vb, va"):
        registry.resolve(f"{RECIPE}:canary")
    with pytest.raises(RegistryError, match="no such version"):
        registry.set_alias(f"{RECIPE}:nope", "production")
    with pytest.raises(RegistryError, match="alias 'Bad_Alias'"):
        registry.set_alias(f"{RECIPE}:va", "Bad_Alias")


def test_pull_refuses_tampering(trained, registry, src_home, tmp_path, keys, raw_s3) -> None:
    model_dir = copy_model(trained, RECIPE, src_home)
    _sign(model_dir, keys)
    registry.push(model_dir)
    tag = _tag(model_dir)
    base, marker = _objects(raw_s3, registry, model_dir)
    home = tmp_path / "dst"

    # A changed file whose marker hash was not updated: caught even without a key.
    pkl = f"{base}/files/saved_model.pkl"
    original = raw_s3.get_object(Bucket="models", Key=pkl)["Body"].read()
    changed = original[:-1] + bytes([original[-1] ^ 1])
    raw_s3.put_object(Bucket="models", Key=pkl, Body=changed)
    with pytest.raises(RegistryError, match=r"saved_model\.pkl: content differs"):
        registry.pull(tag, home)
    assert _store_is_clean(home)

    # The attack from the issue: the file changed and its hash updated everywhere (the
    # marker and the card). Only the signature notices.
    digest = hashlib.sha256(changed).hexdigest()
    marker["files"]["saved_model.pkl"]["sha256"] = digest
    _put_marker(raw_s3, registry, marker)

    def fix_card(info: dict[str, Any]) -> None:
        info["metadata"]["modelport"]["integrity"]["files"]["saved_model.pkl"] = digest

    _rewrite_info(raw_s3, registry, model_dir, fix_card)
    # The card holds the updated hash, so it changed too.
    expected = r"signature check failed: the model card, saved_model\.pkl changed$"
    with pytest.raises(RegistryError, match=expected):
        registry.pull(tag, home, keys.public)
    assert _store_is_clean(home)
    # Without a key the hashes all agree: that is what "not enforced" means.
    assert registry.pull(tag, tmp_path / "unverified")[1] is True


@pytest.mark.parametrize("part", ["card", "signature", "key", "unsigned"])
def test_pull_refuses_bad_signatures(
    part, trained, registry, src_home, tmp_path, keys, raw_s3
) -> None:
    model_dir = copy_model(trained, RECIPE, src_home)
    if part != "unsigned":
        _sign(model_dir, keys)
    registry.push(model_dir)
    key = keys.other_public if part == "key" else keys.public

    def change(info: dict[str, Any]) -> None:
        if part == "card":  # a better-looking metric
            info["metadata"]["modelport"]["evaluation"]["test"]["accuracy"] = 0.999
        else:
            bundle = json.loads(info["metadata"][SIGNATURE_KEY])
            payload = bundle["dsseEnvelope"]["payload"]
            bundle["dsseEnvelope"]["payload"] = payload[:-8] + "AAAAAAA="
            info["metadata"][SIGNATURE_KEY] = json.dumps(bundle)

    if part in ("card", "signature"):
        _rewrite_info(raw_s3, registry, model_dir, change)
    expected = {
        "card": "the model card changed",
        "signature": "signature check failed",
        "key": "Key mismatch: The public key hash",
        "unsigned": "not signed",
    }[part]
    home = tmp_path / "dst"
    with pytest.raises(RegistryError, match=expected) as err:
        registry.pull(_tag(model_dir), home, key)
    assert "\n" not in str(err.value)
    assert _store_is_clean(home)


# -- the command line, as a user (or the chart's init container) runs it --------------


def _cli(*args: str, env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if k not in UNSET and k != "MODELPORT_REGISTRY"}
    child.update({"BENTOML_HOME": str(home), "COLUMNS": "200", **env})
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args],
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.slow
def test_cli_push_promote_list_pull(trained, reg_env, src_home, tmp_path, keys) -> None:
    model_dir = copy_model(trained, RECIPE, src_home)
    tag = _tag(model_dir)
    pushed = _cli("push", tag, "--sign-key", str(keys.private), env=reg_env, home=src_home)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip().endswith(f"/{RECIPE}/{model_dir.name}")

    promoted = _cli("promote", "--registry", tag, env=reg_env, home=src_home)
    assert promoted.returncode == 0, promoted.stderr
    assert "registry's production version" in promoted.stdout
    listed = _cli("models", "--registry", env=reg_env, home=src_home)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if tag in line)
    assert re.search(r"production .*yes .*accuracy 0\.9\d\d", row), listed.stdout
    resolved = _cli("resolve", RECIPE, env=reg_env, home=src_home)
    assert resolved.stdout.strip() == tag

    # The chart's init container: pull the exact version into an empty home, verified.
    home = tmp_path / "pod-home"
    args = ("pull", f"{RECIPE}:production", "--into", str(home))
    pulled = _cli(*args, "--verify-key", str(keys.public), env=reg_env, home=tmp_path / "x")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == tag
    assert (home / "models" / RECIPE / model_dir.name / "model.yaml").is_file()
    # The key may also come from the service's setting, as in the pod.
    again = _cli(*args, env={**reg_env, "MODELPORT_VERIFY_KEY": str(keys.other_public)}, home=home)
    assert "Key mismatch" in _error_line(again)

    pushed_again = _cli("push", tag, env=reg_env, home=src_home)
    assert "never overwritten" in _error_line(pushed_again)


@pytest.mark.slow
def test_cli_errors_are_one_line(s3, reg_env, tmp_path, keys) -> None:
    home = tmp_path / "home"
    assert "no model 'nosuch'" in _error_line(_cli("pull", "nosuch", env=reg_env, home=home))
    line = _error_line(_cli("pull", f"{RECIPE}:canary", env=reg_env, home=home))
    assert "no such version or alias" in line

    no_registry = {k: v for k, v in reg_env.items() if k != "MODELPORT_REGISTRY"}
    line = _error_line(_cli("models", "--registry", env=no_registry, home=home))
    assert "MODELPORT_REGISTRY" in line

    dead = {**reg_env, "MODELPORT_REGISTRY_ENDPOINT_URL": f"http://127.0.0.1:{srv.free_port()}"}
    start = time.monotonic()
    line = _error_line(_cli("models", "--registry", env=dead, home=home))
    assert "unreachable" in line and time.monotonic() - start < 60

    missing = {**reg_env, "MODELPORT_REGISTRY": "s3://no-such-bucket"}
    assert "does not exist" in _error_line(_cli("pull", "x", env=missing, home=home))

    line = _error_line(_cli("sign", "nosuch", "--key", str(keys.public), env=reg_env, home=home))
    assert "not in the model store" in line


@pytest.mark.slow
def test_cli_wrong_credentials(tmp_path) -> None:
    # moto with authentication on: keys it never issued are refused, as S3 does.
    locked = start_moto(tmp_path / "moto.log", {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        env = {
            **CREDENTIALS,
            "MODELPORT_REGISTRY": "s3://models",
            "MODELPORT_REGISTRY_ENDPOINT_URL": locked.url,
        }
        line = _error_line(_cli("models", "--registry", env=env, home=tmp_path))
        assert "denied (InvalidAccessKeyId)" in line and "credentials" in line
    finally:
        locked.stop()


# -- the service refuses what does not verify ----------------------------------------


def _wait_started(url: str, proc: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"server did not start:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_service_enforces_signatures(trained, tmp_path, keys) -> None:
    """Signed and intact: served. Signed, then its card edited in model.yaml (the file
    hash check cannot see that): the service stays unready, saying which and why."""
    home = tmp_path / "home"
    good = copy_model(trained, RECIPE, home)
    bad = copy_model(trained, "diabetes", home)
    for d in (good, bad):
        _sign(d, keys)
    info = bad / "model.yaml"
    info.write_text(re.sub(r"(?m)^(\s+r2: )\S+$", r"\g<1>0.99", info.read_text(), count=1))

    port = srv.free_port()
    log = tmp_path / "server.log"
    env = {"BENTOML_HOME": str(home), "MODELPORT_VERIFY_KEY": str(keys.public)}
    proc = srv.start(port, models=f"{_tag(good)},{_tag(bad)}", env=env, log=log)
    try:
        status = _wait_started(f"http://127.0.0.1:{port}", proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=10) as resp:
            served = {m["name"]: m["version"] for m in json.load(resp)["models"]}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert status == 503, text[-3000:]
    refusal = [line for line in text.splitlines() if "model not ready" in line]
    assert len(refusal) == 1, text[-3000:]
    assert _tag(bad) in refusal[0] and "the model card changed" in refusal[0]
    assert served == {RECIPE: good.name}  # the intact, signed model loaded
