"""`helm` and `kubectl` as `modelport rollout run` calls them, without a cluster: the thin
edge of the judge (``modelport.rollout_io.run``) finds these first on PATH.

- ``helm upgrade ... --reuse-values --set-string/--set-json K=V`` merges the values into
  the release's recorded user values (what ``--reuse-values`` keeps) and renders the real
  chart with the real helm (``helm template``): a value the chart refuses fails as
  ``helm upgrade`` would. What it rendered (Deployments and their model version, the main
  Service's selector) is recorded with the call.
- ``helm get values`` prints the recorded user values.
- ``kubectl patch deployment`` (the verdict's annotations) and ``kubectl create -f -``
  (the Event) are recorded.
- ``kubectl get deployment NAME -o json``: the Deployment the chart renders from the
  recorded values, with the recorded annotation patches applied; its ready replicas are
  all of them if the server standing for it ($ROLLOUT_READY_URLS, name -> URL) answers
  ``GET /readyz`` with 200, else none.

State lives in $ROLLOUT_TOOLS_DIR (values.json, calls.jsonl); $ROLLOUT_REAL_HELM is the real
helm. Usage: ``python recorded_tools.py helm|kubectl ARGS...``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

STATE = Path(os.environ["ROLLOUT_TOOLS_DIR"])


def record(entry: dict[str, Any]) -> None:
    with (STATE / "calls.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


def values() -> dict[str, Any]:
    path = STATE / "values.json"
    return json.loads(path.read_text()) if path.exists() else {}


def put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def render(state: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The real chart rendered with these values (None, helm's error on stderr, if refused)."""
    release = json.loads((STATE / "release.json").read_text())
    path = STATE / "values.yaml"
    path.write_text(yaml.safe_dump(state))
    proc = subprocess.run(
        [
            os.environ["ROLLOUT_REAL_HELM"],
            "template",
            release["name"],
            release["chart"],
            "-n",
            release["namespace"],
            "-f",
            path,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return None
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def upgrade(args: list[str]) -> int:
    assert "--reuse-values" in args, "modelport rollout always upgrades with --reuse-values"
    release = {"name": args[1], "chart": args[2], "namespace": option(args, "--namespace")}
    (STATE / "release.json").write_text(json.dumps(release))
    state = values()
    for flag, item in itertools.pairwise(args):
        if flag in ("--set-string", "--set-json"):
            key, _, raw = item.partition("=")
            put(state, key, raw if flag == "--set-string" else json.loads(raw))
    docs = render(state)
    if docs is None:
        return 1
    deployments = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"].get(
            "modelport.io/model-version"
        )
        for d in docs
        if d["kind"] == "Deployment"
    }
    service = next(
        d for d in docs if d["kind"] == "Service" and not d["metadata"]["name"].endswith("-canary")
    )
    (STATE / "values.json").write_text(json.dumps(state))
    record(
        {
            "tool": "helm",
            "args": args,
            "deployments": deployments,
            "service_selector": service["spec"]["selector"],
        }
    )
    return 0


def get_deployment(name: str) -> int:
    docs = render(values()) or []
    found = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    if not found:
        sys.stderr.write(f'Error from server (NotFound): deployments.apps "{name}" not found\n')
        return 1
    deployment = found[0]
    notes = deployment["metadata"].setdefault("annotations", {})
    for call in calls():
        if call["tool"] == "kubectl" and call["args"][:3] == ["patch", "deployment", name]:
            notes.update(call["patch"]["metadata"]["annotations"])
    url = json.loads(os.environ.get("ROLLOUT_READY_URLS", "{}")).get(name)
    ready = 0
    if url:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
                ready = deployment["spec"].get("replicas", 1) if resp.status == 200 else 0
        except OSError:
            ready = 0
    deployment["status"] = {"readyReplicas": ready}
    print(json.dumps(deployment))
    return 0


def calls() -> list[dict[str, Any]]:
    path = STATE / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def main(argv: list[str]) -> int:
    tool, args = argv[0], argv[1:]
    if tool == "helm" and args[:2] == ["get", "values"]:
        record({"tool": "helm", "args": args})
        print(json.dumps(values()))
        return 0
    if tool == "helm" and args[0] == "upgrade":
        return upgrade(args)
    if tool == "kubectl" and args[0] == "patch":
        record({"tool": "kubectl", "args": args, "patch": json.loads(option(args, "--patch"))})
        return 0
    if tool == "kubectl" and args[:2] == ["get", "deployment"]:
        return get_deployment(args[2])
    if tool == "kubectl" and args[0] == "create":
        record({"tool": "kubectl", "args": args, "object": json.load(sys.stdin)})
        return 0
    sys.stderr.write(f"recorded_tools: {tool} {' '.join(args)} is not expected\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
