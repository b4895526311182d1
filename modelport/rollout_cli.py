"""``modelport rollout``: start, status, analyze, promote, abort and run a canary release
of a Helm release, judged as a model (see docs/deploy.md, "Canary releases").

Exit codes: 0 pass / promoted; 3 a check failed (run: aborted); 4 not enough data
(run: aborted at the deadline); 2 bad arguments or an unreachable tool, one line.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from modelport.cli import OUTPUT_HELP, OutputOpt, _Commands, _fail, app, console, out

EXIT_FAIL = 3
EXIT_INCONCLUSIVE = 4

rollout_app = typer.Typer(
    cls=_Commands,
    help="Canary releases judged as models: errors, latency, predictions, agreement, "
    "feedback; Helm is the only actuator.",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout")

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="The release's namespace.")]
Release = Annotated[str, typer.Argument(help="Helm release name.")]
Chart = Annotated[
    str,
    typer.Option(
        envvar="MODELPORT_ROLLOUT_CHART",
        help="Chart reference for `helm upgrade --reuse-values` (path or repo/chart).",
    ),
]
PromUrl = Annotated[
    str,
    typer.Option(
        "--prometheus", envvar="MODELPORT_PROMETHEUS_URL", help="Prometheus base URL to query."
    ),
]
Selector = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional here
    typer.Option(
        help='Extra PromQL label matchers, e.g. \'namespace="models",job="modelport"\' '
        "(default with a release: its namespace and job)."
    ),
]
Window = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Analysis window, e.g. 10m (default: canary.analysis.window, else 10m)."),
]
ThresholdOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--threshold",
        help="Override a threshold KEY=VALUE (repeatable), e.g. max_psi=0.2 or "
        "min_requests=100; the keys are listed in docs/deploy.md.",
    ),
]
Output = Annotated[OutputOpt, typer.Option("--output", "-o", help=OUTPUT_HELP)]
ShadowOnly = Annotated[
    bool,
    typer.Option(
        "--shadow-only",
        help="The canary takes no live traffic, only stable's mirrored requests (the share "
        "is --shadow, else the release's canary.shadow.fraction); feedback checks are skipped.",
    ),
]


def _started(version: str, shadow_only: bool) -> str:
    return f"model version {version}" + (", shadow-only (no live traffic)" if shadow_only else "")


@contextmanager
def _one_line() -> Iterator[None]:
    from rich.markup import escape

    from modelport.rollout import RolloutError

    try:
        yield
    except RolloutError as exc:
        raise _fail(escape(str(exc))) from None


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def thresholds(values: dict[str, Any], window: str | None, overrides: list[str]) -> Any:
    """Thresholds from the release's canary.analysis values, then --window/--threshold."""
    from modelport.rollout import RolloutError, Thresholds

    known = {f.name: f.type for f in fields(Thresholds)}
    given: dict[str, Any] = {}
    analysis = (values.get("canary") or {}).get("analysis") or {}
    for key, value in analysis.items():
        if _snake(key) in known:
            given[_snake(key)] = value
    for item in overrides:
        key, sep, value = item.partition("=")
        key = _snake(key.strip())
        if not sep or key not in known:
            raise RolloutError(
                f"--threshold {item!r}: expected KEY=VALUE with KEY one of {', '.join(known)}"
            )
        given[key] = value.strip()
    if window:
        given["window"] = window
    for key, value in list(given.items()):
        if key == "window":
            given[key] = str(value)
            continue
        try:
            whole = key.startswith("min_") and key != "min_agreement"
            given[key] = int(value) if whole else float(value)
        except (TypeError, ValueError):
            raise RolloutError(f"threshold {key}: {value!r} is not a number") from None
    return Thresholds(**given)


def _values(release: str | None, namespace: str) -> dict[str, Any]:
    from modelport import rollout_io

    return rollout_io.helm_values(release, namespace) if release else {}


def _default_selector(release: str | None, namespace: str, selector: str | None) -> str:
    if selector is not None:
        return selector
    if release is None:
        return ""
    from modelport.rollout import fullname

    return f'namespace="{namespace}",job="{fullname(release)}"'


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


STYLE = {"pass": "green", "fail": "bold red", "insufficient": "yellow", "skipped": "dim"}


def print_report(report: Any, output: OutputOpt) -> None:
    if output is OutputOpt.json:
        out.print_json(json.dumps(report.to_dict()))
        return
    table = Table(
        title=f"canary {report.model}:{report.canary_version} vs stable "
        f"{report.stable_version}, window {report.window}",
        title_justify="left",
    )
    for col in ("check", "canary", "stable", "threshold", "samples", "status"):
        table.add_column(col, justify="right" if col in ("canary", "stable", "samples") else "left")
    for c in report.checks:
        table.add_row(
            c.name,
            _fmt(c.canary),
            _fmt(c.stable),
            c.threshold,
            f"{c.samples:.0f}/{c.min_samples}",
            f"[{STYLE[c.status]}]{c.status}[/]",
        )
    out.print(table)
    for c in report.checks:
        if c.detail and c.status not in ("skipped",):
            out.print(f"  {c.name}: {c.detail}", highlight=False)
    style = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow"}
    out.print(f"verdict: [{style[report.verdict]}]{report.verdict}[/]")


def _shadow(values: dict[str, Any]) -> tuple[bool | None, bool]:
    """(mirroring on, shadow-only) from the release's values; (None, False) without them."""
    if not values:
        return None, False
    shadow = (values.get("canary") or {}).get("shadow") or {}
    enabled = bool(shadow.get("enabled", False))
    return enabled, enabled and bool(shadow.get("only", False))


def _analyze(
    prometheus: str,
    model: str | None,
    release: str | None,
    namespace: str,
    values: dict[str, Any],
    t: Any,
    selector: str | None,
    shadow_only: bool = False,
) -> Any:
    from modelport import rollout, rollout_io

    name = model or (values.get("model") or {}).get("name")
    if not name:
        raise rollout.RolloutError("give --model NAME (or a release whose values name it)")
    shadow, only = _shadow(values)
    if shadow_only:
        shadow, only = True, True
    obs = rollout_io.observe(
        rollout_io.Prometheus(prometheus),
        name,
        t.window,
        _default_selector(release, namespace, selector),
        shadow=shadow,
        shadow_only=only,
    )
    return rollout.analyze(obs, t)


@rollout_app.command()
def start(
    release: Release,
    version: Annotated[str, typer.Option(help="Model version the canary serves.")],
    image_tag: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Canary image tag (the bento holding VERSION; default: stable's)."),
    ] = None,
    shadow: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            help="Also mirror this share (0-1] of stable's requests to the canary and "
            "compare the predictions."
        ),
    ] = None,
    shadow_only: ShadowOnly = False,
    namespace: Namespace = "default",
    chart: Chart = "helm/modelport",
) -> None:
    """Start a canary: a second Deployment with VERSION behind the release's Service (or,
    with --shadow-only, receiving only what stable mirrors to it)."""
    from modelport import rollout, rollout_io

    with _one_line():
        sets = rollout.start_values(version, image_tag, shadow, shadow_only)
        rollout_io.run("helm", rollout.Release(release, namespace, chart).upgrade(sets))
    out.print(f"canary of {release} started: {_started(version, shadow_only)}", highlight=False)


@rollout_app.command()
def promote(
    release: Release, namespace: Namespace = "default", chart: Chart = "helm/modelport"
) -> None:
    """Stable takes the canary's model version and image; the canary is removed."""
    from modelport import rollout, rollout_io

    with _one_line():
        sets = rollout.promote_values(rollout_io.helm_values(release, namespace))
        rollout_io.run("helm", rollout.Release(release, namespace, chart).upgrade(sets))
    out.print(f"{release}: stable now serves model version {sets['model.version']}")


@rollout_app.command()
def abort(
    release: Release, namespace: Namespace = "default", chart: Chart = "helm/modelport"
) -> None:
    """Remove the canary; stable is left as it is."""
    from modelport import rollout, rollout_io

    with _one_line():
        rollout_io.run(
            "helm", rollout.Release(release, namespace, chart).upgrade(rollout.abort_values())
        )
    out.print(f"{release}: canary removed")


@rollout_app.command()
def status(
    release: Release, namespace: Namespace = "default", output: Output = OutputOpt.table
) -> None:
    """What runs where (stable, canary, shadow) and the last verdict on the canary."""
    from modelport import rollout, rollout_io

    with _one_line():
        values = rollout_io.helm_values(release, namespace)
        canary = values.get("canary") or {}
        stable_name = rollout.fullname(release)
        info: dict[str, Any] = {
            "release": release,
            "model": (values.get("model") or {}).get("name"),
            "stable": {
                "model_version": (values.get("model") or {}).get("version") or "latest",
                "image_tag": (values.get("image") or {}).get("tag") or None,
            },
            "canary": None,
        }
        if canary.get("enabled"):
            verdict, evidence = None, None
            text = rollout_io.run(
                "kubectl",
                ["get", "deployment", f"{stable_name}-canary", "-n", namespace, "-o", "json"],
            )
            deployment = json.loads(text)
            notes = deployment["metadata"].get("annotations") or {}
            verdict = notes.get(f"{rollout.ANNOTATION}-verdict")
            if notes.get(f"{rollout.ANNOTATION}-evidence"):
                evidence = json.loads(notes[f"{rollout.ANNOTATION}-evidence"])
            info["canary"] = {
                "model_version": (canary.get("model") or {}).get("version"),
                "image_tag": (canary.get("image") or {}).get("tag") or None,
                "replicas": canary.get("replicaCount", 1),
                "ready": (deployment.get("status") or {}).get("readyReplicas", 0),
                "shadow": (canary.get("shadow") or {}).get("enabled", False),
                "shadow_only": _shadow(values)[1],
                "verdict": verdict,
                "analyzed_at": (evidence or {}).get("at"),
            }
    if output is OutputOpt.json:
        out.print_json(json.dumps(info))
        return
    s = info["stable"]
    out.print(f"{release}: model {info['model']}", highlight=False)
    out.print(
        f"  stable  version {s['model_version']}, image {s['image_tag'] or '(chart default)'}"
    )
    c = info["canary"]
    if c is None:
        out.print("  canary  none")
        return
    out.print(
        f"  canary  version {c['model_version']}, image {c['image_tag'] or '(stable image)'}, "
        f"{c['ready']}/{c['replicas']} ready, shadow "
        + ("only" if c["shadow_only"] else "on" if c["shadow"] else "off"),
        highlight=False,
    )
    out.print(
        f"  verdict {c['verdict'] or 'not analysed yet'}"
        + (f" (at {c['analyzed_at']})" if c["analyzed_at"] else ""),
        highlight=False,
    )


@rollout_app.command()
def analyze(
    release: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="Helm release (optional: without one, give --model and --selector)."),
    ] = None,
    prometheus: PromUrl = "http://127.0.0.1:9090",
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Model name (default: the release's model.name)."),
    ] = None,
    namespace: Namespace = "default",
    selector: Selector = None,
    window: Window = None,
    threshold: ThresholdOpt = None,
    publish: Annotated[
        bool,
        typer.Option(
            help="Write the verdict on the canary Deployment (annotation) and as an Event "
            "(with a release only)."
        ),
    ] = True,
    shadow_only: Annotated[
        bool,
        typer.Option(
            "--shadow-only",
            help="The canary is shadow-only (read from the release's values when given).",
        ),
    ] = False,
    output: Output = OutputOpt.table,
) -> None:
    """Judge the canary against stable over the window; exit 0 pass, 3 fail, 4 not
    enough data."""
    from modelport import rollout, rollout_io

    with _one_line():
        values = _values(release, namespace)
        t = thresholds(values, window, threshold or [])
        report = _analyze(prometheus, model, release, namespace, values, t, selector, shadow_only)
        print_report(report, output)
        if release and publish:
            rollout_io.publish(report, f"{rollout.fullname(release)}-canary", namespace)
    if report.verdict == "fail":
        raise typer.Exit(EXIT_FAIL)
    if report.verdict == "inconclusive":
        raise typer.Exit(EXIT_INCONCLUSIVE)


@rollout_app.command("run")
def run_(
    release: Release,
    version: Annotated[str, typer.Option(help="Model version the canary serves.")],
    prometheus: PromUrl = "http://127.0.0.1:9090",
    image_tag: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Canary image tag (default: stable's)."),
    ] = None,
    shadow: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Mirror this share (0-1] of stable's requests to the canary."),
    ] = None,
    shadow_only: ShadowOnly = False,
    duration: Annotated[
        str, typer.Option(help="Least time the canary runs before it may be promoted.")
    ] = "10m",
    interval: Annotated[str, typer.Option(help="Time between analyses.")] = "1m",
    deadline: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Longest wait for enough data (default: twice --duration)."),
    ] = None,
    promote_on_timeout: Annotated[
        bool,
        typer.Option(
            "--promote-on-timeout",
            help="Promote when the deadline comes without enough data (default: abort).",
        ),
    ] = False,
    namespace: Namespace = "default",
    chart: Chart = "helm/modelport",
    selector: Selector = None,
    window: Window = None,
    threshold: ThresholdOpt = None,
    output: Output = OutputOpt.table,
) -> None:
    """Start a canary, analyse it every --interval, then promote or abort by itself.
    Exit 0 promoted; 3 aborted on a failed check; 4 aborted without enough data."""
    from modelport import rollout, rollout_io

    with _one_line():
        seconds = {
            name: rollout.Thresholds(window=value).window_seconds
            for name, value in (
                ("duration", duration),
                ("interval", interval),
                (
                    "deadline",
                    deadline or f"{2 * rollout.Thresholds(window=duration).window_seconds}s",
                ),
            )
        }
        helm = rollout.Release(release, namespace, chart)
        sets = rollout.start_values(version, image_tag, shadow, shadow_only)
        rollout_io.run("helm", helm.upgrade(sets))
        console.print(f"canary of {release} started: {_started(version, shadow_only)}")
        values = rollout_io.helm_values(release, namespace)
        t = thresholds(values, window, threshold or [])
        began = time.monotonic()
        deployment = f"{rollout.fullname(release)}-canary"
        while True:
            time.sleep(seconds["interval"])
            report = _analyze(prometheus, None, release, namespace, values, t, selector)
            elapsed = time.monotonic() - began
            action = rollout.decide(
                report.verdict,
                elapsed,
                seconds["duration"],
                seconds["deadline"],
                "promote" if promote_on_timeout else "abort",
            )
            console.print(f"[{elapsed:.0f}s] {rollout.summary(report)}", highlight=False)
            if action == "wait":
                rollout_io.annotate(deployment, namespace, rollout.annotation_patch(report))
                continue
            print_report(report, output)
            rollout_io.publish(report, deployment, namespace, action)
            if action == "promote":
                sets = rollout.promote_values(rollout_io.helm_values(release, namespace))
                rollout_io.run("helm", helm.upgrade(sets))
                out.print(f"promoted: {release} stable now serves model version {version}")
                return
            rollout_io.run("helm", helm.upgrade(rollout.abort_values()))
            out.print(f"aborted: canary of {release} removed ({report.verdict})")
            raise typer.Exit(EXIT_FAIL if report.verdict == "fail" else EXIT_INCONCLUSIVE)
