"""The ``modelport`` command line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup, TyperOption

console = Console(stderr=True)
out = Console()

EXIT_DATA = 2  # bad input data or arguments
EXIT_GATE = 3  # quality gate refused the model


def _fail(message: str, code: int = EXIT_DATA) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _bare_flags(params: list[Any]) -> list[Any]:
    # Typer 0.29's rich help prints a flag's type ("--force <bool>"); 0.28 and older hid
    # any type containing "bool". An empty metavar is what the help then shows.
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


class _Commands(TyperGroup):
    """Behaviour every command shares: flags shown as flags in --help, and a malformed
    MODELPORT_* setting reported as one line (exit 2) whichever command reads it."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _bare_flags(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _bare_flags(command.get_params(ctx))
        return command

    def invoke(self, ctx: Any) -> Any:
        from pydantic import ValidationError
        from pydantic_settings.exceptions import SettingsError

        from modelport import settings_check

        try:
            # Checked before any command runs (a broken environment fails fast and the
            # same way everywhere), but not for --help, which must always work.
            if not any(arg in ctx.help_option_names for arg in ctx.args):
                settings_check.check_all()
            return super().invoke(ctx)
        except settings_check.SettingsValueError as exc:
            raise _fail(str(exc)) from None
        except (ValidationError, SettingsError) as exc:
            line = settings_check.describe(exc)
            if line is None:
                raise
            raise _fail(line) from None


app = typer.Typer(
    name="modelport",
    cls=_Commands,
    help="Train, serve and deploy machine-learning models on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class TaskOpt(str, Enum):
    classification = "classification"
    regression = "regression"


class FrameworkOpt(str, Enum):
    sklearn = "sklearn"
    keras = "keras"


@app.command()
def train(
    recipe: Annotated[
        Optional[str],  # noqa: UP045 - typer needs Optional here
        typer.Argument(help="Built-in recipe: breast-cancer, diabetes, breast-cancer-keras."),
    ] = None,
    csv: Annotated[Optional[Path], typer.Option(help="Train on this CSV file.")] = None,  # noqa: UP045
    target: Annotated[Optional[str], typer.Option(help="Target column of --csv.")] = None,  # noqa: UP045
    task: Annotated[
        Optional[TaskOpt],  # noqa: UP045
        typer.Option(
            help="Task for --csv (default: inferred; a target with two values is a classification)."
        ),
    ] = None,
    framework: Annotated[FrameworkOpt, typer.Option(help="Framework for --csv.")] = (
        FrameworkOpt.sklearn
    ),
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Model name in the store (default: the recipe name)."),
    ] = None,
    estimator: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Model family: linear (logistic/least squares, the default), ridge, lasso, "
            "decision-tree, random-forest, hist-gradient-boosting, svm, knn, keras-mlp. "
            "With --search: search this family only."
        ),
    ] = None,
    param: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            help="Estimator parameter override KEY=VALUE (repeatable), e.g. max_depth=4; "
            "recorded in the model card."
        ),
    ] = None,
    search: Annotated[
        bool,
        typer.Option(
            "--search",
            help="Cross-validated model selection over the estimator families and a small "
            "grid of their parameters, within --budget; the leaderboard goes into the "
            "model card and the report.",
        ),
    ] = False,
    budget: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Time budget of --search, e.g. 120s or 5m (MODELPORT_SEARCH_BUDGET)."),
    ] = None,
    impute: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Missing feature values: median (default; most frequent for text, median "
            "date for dates), most_frequent, or drop the rows. Recorded in the model card."
        ),
    ] = None,
    unknown_categories: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="At serving, a category never seen in training: error (default: 400 naming "
            "the feature, value and known categories) or ignore. Recorded per model."
        ),
    ] = None,
    sep: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Delimiter of --csv (default: sniffed among , ; tab |)."),
    ] = None,
    encoding: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Encoding of --csv (default: sniffed; a UTF-8 BOM is understood)."),
    ] = None,
    drop: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="Leave this column of --csv out of the model (repeatable)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Register even if the quality gate fails, and train again even if this "
            "data and these parameters already made a version.",
        ),
    ] = False,
    promote: Annotated[
        bool, typer.Option("--promote", help="Label the new version stage=production.")
    ] = False,
) -> None:
    """Train, evaluate and register a model (quality-gated)."""
    from modelport.settings import TrainingSettings
    from training.data import DataError, build_dataset, frame_sha256, load_csv
    from training.estimators import KERAS, ParamError, parse_params, resolve_name
    from training.recipes import RECIPES
    from training.run import Choice
    from training.run import train as run_train
    from training.search import parse_budget

    settings = TrainingSettings()
    strategy = impute or settings.impute
    policy = unknown_categories or settings.unknown_categories
    try:
        if strategy not in ("median", "most_frequent", "drop"):
            raise _fail(f"--impute {strategy!r}: choose median, most_frequent or drop")
        if policy not in ("error", "ignore"):
            raise _fail(f"--unknown-categories {policy!r}: choose error or ignore")
        family = resolve_name(estimator) if estimator else None
        overrides = parse_params(param or [])
        budget_s = parse_budget(budget or settings.search_budget)
        if (recipe is None) == (csv is None):
            raise _fail("give either a RECIPE or --csv PATH (with --target and --name)")
        if recipe is not None:
            if recipe not in RECIPES:
                raise _fail(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
            r = RECIPES[recipe]
            frame = r.load()
            data = build_dataset(
                frame,
                r.target,
                source=f"sklearn.datasets ({r.name})",
                sha256=frame_sha256(frame),
                task=r.task,
                min_rows=settings.min_rows,
                max_categories=settings.max_categories,
                impute=strategy,  # type: ignore[arg-type]
            )
            fw, model_name = r.framework, name or r.name
        else:
            assert csv is not None
            if not target or not name:
                raise _fail("--csv needs --target COLUMN and --name NAME")
            data = load_csv(
                csv,
                target,
                task=task.value if task else None,
                min_rows=settings.min_rows,
                max_categories=settings.max_categories,
                impute=strategy,  # type: ignore[arg-type]
                drop=tuple(drop or ()),
                sep=sep,
                encoding=encoding,
            )
            fw, model_name = framework.value, name
        if family == KERAS:
            fw = "keras"
        elif family is not None and fw == "keras":
            fw = "sklearn"
        if search and fw == "keras":
            raise _fail("--search covers the scikit-learn families; leave out keras-mlp")
    except (DataError, ParamError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _check_name(model_name)
    if fw == "keras":
        _require_tensorflow()

    choice = Choice(
        estimator=None if family == KERAS else family,
        params=overrides,
        search=search,
        budget_s=budget_s,
        unknown_categories=policy,  # type: ignore[arg-type]
    )
    try:
        result = run_train(
            data,
            name=model_name,
            framework=fw,
            settings=settings,
            console=console,
            force=force,
            stage="production" if promote else "staging",
            choice=choice,
        )
    except ParamError as exc:
        raise _fail(str(exc)) from None
    if result.existing:
        console.print(result.notes[0], highlight=False, soft_wrap=True)
    else:
        _print_result(result)
        if not result.registered:
            raise _fail(
                "quality gate failed; nothing was registered (use --force to override): "
                + "; ".join(result.gate.failures),
                EXIT_GATE,
            )
    if promote:
        from modelport import store

        _, demoted = store.promote(result.tag)
        for old in demoted:
            console.print(f"demoted {old.tag} to stage=archived")
    out.print(result.tag)


@app.command()
def score(
    model: Annotated[
        str, typer.Argument(help="NAME (its production version, else the newest) or NAME:VERSION.")
    ],
    csv: Annotated[Path, typer.Option(help="CSV file to score: one column per feature.")],
    out_file: Annotated[
        Path,
        typer.Option(
            "--out", help="Where to write the input rows with prediction and probability columns."
        ),
    ],
    sep: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Delimiter of --csv (default: sniffed)."),
    ] = None,
    encoding: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Encoding of --csv (default: sniffed)."),
    ] = None,
) -> None:
    """Score a CSV file offline with a stored model, checked by the model's own rules."""
    from modelport.store import StoreError
    from training.batch import score_csv
    from training.data import DataError

    try:
        result = score_csv(model, csv, out_file, console=console, sep=sep, encoding=encoding)
    except (DataError, StoreError) as exc:
        raise _fail(str(exc)) from None
    for feature, n in sorted(result.imputed.items()):
        console.print(f"imputed {n} missing value(s) of {feature!r}")
    console.print(f"scored {result.rows} rows with {result.tag}")
    out.print(str(result.out))


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?", name):
        raise _fail(
            f"model name {name!r} must be lower-case letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (at most 63 characters)"
        )


def _require_tensorflow() -> None:
    import importlib.util

    if importlib.util.find_spec("keras") is None:
        raise _fail("Keras models need TensorFlow: pip install 'modelport[tensorflow]'")


def _print_result(result: object) -> None:
    from training.run import TrainResult

    assert isinstance(result, TrainResult)
    ev = result.card.evaluation
    table = Table(title="held-out test metrics", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in ev.test.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    if ev.confusion_matrix is not None:
        console.print(
            f"confusion matrix (rows actual, cols predicted, classes "
            f"{result.card.classes}): {ev.confusion_matrix}"
        )
    if result.card.leaderboard:
        board = Table(title="search leaderboard (cross-validated on the train split)")
        for col in ("estimator", "params", "cv score", "fit s", "predict µs/row"):
            board.add_column(col)
        for c in result.card.leaderboard:
            board.add_row(
                ("* " if c.chosen else "") + c.estimator,
                ", ".join(f"{k}={v}" for k, v in c.params.items()),
                f"{c.metric} {c.cv_mean:.4f} ± {c.cv_std:.4f}",
                f"{c.fit_seconds:.3f}",
                f"{c.predict_us_per_row:.0f}",
            )
        console.print(board)
    style = "bold yellow" if ev.overfit else "green"
    console.print(
        f"[{style}]{ev.score_name}: train {ev.train_score:.4f}  validation "
        f"{ev.validation_score:.4f}  gap {ev.overfit_gap:+.4f}"
        + ("  OVER-FITTED" if ev.overfit else "")
        + "[/]"
    )
    for failure in result.gate.failures:
        console.print(f"[bold red]gate:[/] {failure}")
    for note in result.gate.notes:
        console.print(f"gate: {note}")
    if result.registered and result.gate.failures:
        console.print("[bold yellow]WARNING: quality gate failed; registered because of --force[/]")
    console.print(f"report: {result.report}")


class OutputOpt(str, Enum):
    table = "table"
    json = "json"


OUTPUT_HELP = "table (for people; names are never cut) or json (for scripts)."


def _print_whole(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    """A table whose first column (tags, variable names) is never cut, so it can be copied:
    other columns wrap. Where even that does not fit the terminal, one block per row."""
    table = Table(title=title, show_header=True, title_justify="left")
    widths = [max([len(columns[0]), *(len(r[0]) for r in rows)])]
    table.add_column(columns[0], no_wrap=True, min_width=widths[0])
    for i, col in enumerate(columns[1:], start=1):
        # Narrower than this, a wrapped column is no longer readable: use blocks instead.
        widths.append(min(10, max([len(col), *(len(r[i]) for r in rows)])))
        table.add_column(col, overflow="fold", min_width=widths[-1])
    for row in rows:
        table.add_row(*row)
    # Each column adds its two padding spaces and one rule; the table one more rule.
    if sum(widths) + 3 * len(columns) + 1 <= out.width:
        out.print(table)
        return
    if title:
        out.print(title, style="bold", highlight=False)
    for row in rows:
        out.print(row[0], style="bold", highlight=False, soft_wrap=True)
        for col, value in zip(columns[1:], row[1:], strict=True):
            out.print(f"  {col}: {value}", highlight=False)


def _print_json(data: object) -> None:
    # Plain stdout: rich would wrap long lines at the terminal's width.
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command("models")
def list_models(
    name: Annotated[Optional[str], typer.Argument(help="Only this model name.")] = None,  # noqa: UP045
    registry: Annotated[
        bool, typer.Option("--registry", help="List the registry (MODELPORT_REGISTRY) instead.")
    ] = False,
    output: Annotated[OutputOpt, typer.Option("--output", "-o", help=OUTPUT_HELP)] = (
        OutputOpt.table
    ),
) -> None:
    """List the models in the store with their stage and headline metrics."""
    if registry:
        from modelport.registry_cli import list_registry

        return list_registry(name)
    from bentoml.exceptions import NotFound

    from modelport import store

    try:
        models = store.list_models(name)
    except NotFound:
        models = []
    records, rows = [], []
    for m in models:
        metrics: dict[str, float] | None
        try:
            card = store.card_of(m)
            keys = (
                ("accuracy", "roc_auc", "f1")
                if card.task == "classification"
                else ("r2", "rmse", "mae")
            )
            metrics = {k: card.evaluation.test[k] for k in keys if k in card.evaluation.test}
            metric_text = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        except store.StoreError:
            metrics, metric_text = None, "(not a modelport model)"
        labels = m.info.labels
        records.append(
            {
                "tag": str(m.tag),
                "name": m.tag.name,
                "version": m.tag.version,
                "framework": labels.get("framework"),
                "task": labels.get("task"),
                "stage": labels.get("stage"),
                "metrics": metrics,
                "created": m.info.creation_time.isoformat(),
            }
        )
        rows.append(
            [
                str(m.tag),
                labels.get("framework", "?"),
                labels.get("task", "?"),
                labels.get("stage", "-"),
                metric_text,
                m.info.creation_time.strftime("%Y-%m-%d %H:%M"),
            ]
        )
    if output is OutputOpt.json:
        _print_json(records)
        return
    _print_whole(None, ["tag", "framework", "task", "stage", "metrics", "created"], rows)


@app.command()
def promote(
    tag: Annotated[str, typer.Argument(help="NAME:VERSION to label stage=production.")],
    registry: Annotated[
        bool,
        typer.Option("--registry", help="Move the registry's production alias to it instead."),
    ] = False,
) -> None:
    """Make one version the production version (the previous one is archived)."""
    if registry:
        from modelport.registry_cli import promote_registry

        return promote_registry(tag)
    from modelport import store

    try:
        model, demoted = store.promote(tag)
    except store.StoreError as exc:
        raise _fail(str(exc)) from None
    for old in demoted:
        console.print(f"archived {old.tag}")
    out.print(f"{model.tag} is now stage=production")


@app.command()
def config(
    output: Annotated[OutputOpt, typer.Option("--output", "-o", help=OUTPUT_HELP)] = (
        OutputOpt.table
    ),
) -> None:
    """Show every MODELPORT_* setting, its current value and what it does."""
    import json

    from modelport.settings_check import settings_classes, variable

    groups: list[dict[str, Any]] = []
    for cls in settings_classes():
        current = cls().model_dump(mode="json")
        entries = [
            {
                "variable": variable(cls, field_name),
                # The form the variable takes: JSON for dicts and lists, else plain text.
                "value": current[field_name],
                "description": field.description or "",
            }
            for field_name, field in cls.model_fields.items()
        ]
        groups.append({"settings": cls.__name__, "about": cls.__doc__, "variables": entries})
    if output is OutputOpt.json:
        _print_json(groups)
        return
    for group in groups:
        rows = [
            [
                str(e["variable"]),
                e["value"] if isinstance(e["value"], str) else json.dumps(e["value"]),
                str(e["description"]),
            ]
            for e in group["variables"]
        ]
        _print_whole(str(group["about"]), ["variable", "value", "description"], rows)


@app.command()
def serve(
    port: Annotated[
        int, typer.Option(envvar="BENTOML_PORT", help="Port on 127.0.0.1.", min=1, max=65535)
    ] = 3000,
    models: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Comma-separated model tags (default: MODELPORT_MODELS)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve models with BentoML on 127.0.0.1, in the foreground, showing the server's log.

    Once the models have loaded it says ready and serves until stopped: Ctrl-C (SIGINT)
    or SIGTERM is passed to the server, which finishes the requests it has and exits. If
    a model cannot be served (not in the store, failed its self-test, ...), it prints
    each model's reason, stops the server and exits 1; so does a port already in use.
    """
    from modelport import server, settings_check

    # The server would only log a traceback for these; say it here, before starting it.
    settings_check.check_all()
    if server.port_in_use(port):
        raise _fail(f"port {port} on 127.0.0.1 is in use; choose another with --port", 1)
    url = f"http://127.0.0.1:{port}"
    proc = server.start(port, models=models, workers=workers, pipe=True)
    log = server.follow(proc, _show_server_line)
    with server.forward_signals(proc) as signalled:
        try:
            started = server.wait_started(url, proc)
        except RuntimeError as exc:
            if signalled.signal is not None:
                started = None  # stopped while starting: not a failure of the server
            else:
                raise _fail(_startup_failure(str(exc), log.tail), 1) from None
        for m in started.served if started is not None else []:
            console.print(
                f"serving {m.get('name')}:{m.get('version')} "
                f"({m.get('framework')} {m.get('task')})",
                highlight=False,
            )
        if started is not None and not started.ready:
            reasons = "; ".join(started.failed.values()) or "see the log above"
            server.stop(proc)
            log.join()
            raise _fail(f"not serving, models failed to load: {reasons}", 1)
        if started is not None:
            console.print(
                f"[bold green]ready[/] in {started.seconds:.1f}s: {url} "
                f"(predict: POST {url}/predict, metrics: {url}/metrics); Ctrl-C stops",
                highlight=False,
            )
        code = proc.wait()
    log.join()
    if signalled.signal is None and code != 0:
        raise _fail(f"the server exited with code {code}", 1)
    raise typer.Exit(code)


def _show_server_line(line: str) -> None:
    console.print(line, highlight=False, markup=False, soft_wrap=True)


def _startup_failure(message: str, tail: Iterable[str]) -> str:
    lines = list(tail)
    if any("address already in use" in line.lower() for line in lines):
        return f"{message}: its port is in use"
    return f"{message} (its log is above)"


class BackendOpt(str, Enum):
    docker = "docker"
    podman = "podman"
    buildah = "buildah"


@app.command()
def build(
    models: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Comma-separated model tags (default: bentofile.yaml's models)."),
    ] = None,
    project: Annotated[Path, typer.Option(help="Folder holding bentofile.yaml.")] = Path("."),
    image: Annotated[
        bool,
        typer.Option("--image", help="Also build the service image, modelport:<bento version>."),
    ] = False,
    backend: Annotated[
        Optional[BackendOpt],  # noqa: UP045
        typer.Option(
            help="Image builder (default: docker if its daemon answers, else podman, else buildah)."
        ),
    ] = None,
    pull: Annotated[
        bool,
        typer.Option(
            help="Let the builder pull the base image; --no-pull uses only "
            "local images (CI: hack/build-base-image.sh provides the base)."
        ),
    ] = True,
    image_tag: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--image-tag", help="Extra tag for the image (repeatable), e.g. modelport:latest."
        ),
    ] = None,
) -> None:
    """Build the bento (service + exact model versions) and print its tag; with --image,
    build its image too and print the image tag."""
    from modelport import bento, store

    tags = [t.strip() for t in models.split(",") if t.strip()] if models else None
    try:
        tag = bento.build(project.resolve(), tags)
    except store.StoreError as exc:
        raise _fail(f"{exc} (train it first: modelport train ...)") from None
    out.print(tag)
    if image:
        _build_image(
            tag, project.resolve(), backend.value if backend else None, pull, image_tag or []
        )


def _build_image(
    bento_tag: str, project: Path, backend: str | None, pull: bool, extra_tags: list[str]
) -> None:
    from modelport import image

    def show(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    try:
        if not pull:
            base = image.bento_base_image(bento_tag)
            chosen = image.choose_backend(image.probe_backends(), backend)
            if not image.image_exists(base, chosen):
                raise image.ImageError(
                    f"base image {base} is not in local storage and --no-pull forbids "
                    f"pulling it: build the stand-in with `hack/build-base-image.sh {base}`"
                )
        built = image.build(
            bento_tag,
            project=project,
            backend=backend,
            pull=pull,
            extra_tags=extra_tags,
            on_line=show,
        )
    except image.ImageError as exc:
        raise _fail(str(exc), 1) from None
    console.print(
        f"built {built.tag} with {built.backend} in {built.seconds:.0f}s, {built.size / 1e6:.0f} MB"
    )
    out.print(built.tag)


DEMO_RECIPES = ("breast-cancer", "diabetes", "breast-cancer-keras")


def _demo_predictions(url: str) -> tuple[dict[str, Any], bytes] | None:
    """Each served model's stored sample sent to /predict and the answer printed; returns
    the first (model entry, request body) for the curl example."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url}/models") as resp:
        listed = json.load(resp)["models"]
    first = None
    for entry in listed:
        body = json.dumps(entry["sample"]).encode()
        req = urllib.request.Request(
            f"{url}/predict", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req) as resp:
            answer = json.load(resp)
        out.print(
            f"[bold]{entry['name']}[/] {entry['version']}: "
            f"predictions={answer['predictions']} "
            + (f"probabilities={answer['probabilities']}" if answer.get("probabilities") else "")
        )
        first = first or (entry, body)
    return first


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to serve on (0: any free port).")] = 3000,
    once: Annotated[
        bool, typer.Option("--once", help="Stop after the sample predictions.")
    ] = False,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train even if production models exist.")
    ] = False,
) -> None:
    """Train the demo models (if needed), serve them and show a sample prediction."""
    import subprocess
    import tempfile

    from modelport import server, settings_check, store

    settings_check.check_all()
    for recipe in DEMO_RECIPES:
        if retrain or store.production_model(recipe) is None:
            console.rule(f"training {recipe}")
            code = subprocess.call(
                [sys.executable, "-m", "modelport", "train", recipe, "--promote"]
            )
            if code != 0:
                raise _fail(f"training {recipe} failed (exit {code})", code)
        else:
            production = store.production_model(recipe)
            assert production is not None
            console.print(f"{recipe}: using production version {production.tag}")
    port = port or server.free_port()
    if server.port_in_use(port):
        raise _fail(f"port {port} on 127.0.0.1 is in use; choose another with --port", 1)
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.gettempdir()) / f"modelport-demo-{port}.log"
    console.rule(f"serving on {url}")
    proc = server.start(port, models=",".join(DEMO_RECIPES), log=log)
    # Ctrl-C or SIGTERM reaches the server (its own process group) through this.
    with server.forward_signals(proc) as signalled:
        try:
            started = server.wait_started(url, proc, timeout=300)
        except (RuntimeError, TimeoutError) as exc:
            if signalled.signal is not None:
                return
            raise _fail(f"{exc}; see {log}", 1) from None
        if not started.ready:
            reasons = "; ".join(started.failed.values()) or f"see {log}"
            raise _fail(f"not serving, models failed to load: {reasons}", 1)
        console.print(f"ready in {started.seconds:.1f}s (server log: {log})")
        try:
            first = _demo_predictions(url)
        except OSError as exc:  # urllib's errors included
            if signalled.signal is not None:
                return  # stopped while the samples ran
            raise _fail(f"sample prediction failed: {exc}; see {log}", 1) from None
        if first:
            out.print("\nTry it:", style="bold")
            out.print(
                f"curl -s -X POST {url}/predict -H 'Content-Type: application/json' "
                f"-d '{first[1].decode()}'",
                soft_wrap=True,
                highlight=False,
            )
            out.print("Why that prediction:", style="bold")
            out.print(
                f"curl -s -X POST {url}/explain -H 'Content-Type: application/json' "
                f"-d '{first[1].decode()}'",
                soft_wrap=True,
                highlight=False,
            )
        out.print(f"Metrics: {url}/metrics   Models: {url}/models   Docs: {url}/", highlight=False)
        if once:
            return
        out.print("Serving; Ctrl-C stops.")
        proc.wait()


@app.command()
def explain(
    model: Annotated[str, typer.Argument(help="Model tag: NAME (production) or NAME:VERSION.")],
    csv: Annotated[Path, typer.Option(help="CSV file with one column per model feature.")],
    out_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", help="Attributions CSV (default: FILE.attributions.csv)."),
    ] = None,
    all_classes: Annotated[
        bool, typer.Option("--all-classes", help="Explain every class, not only the predicted.")
    ] = False,
    top: Annotated[int, typer.Option(min=1, help="Features to print.")] = 10,
) -> None:
    """Explain every row of a CSV offline: attributions per feature, top features printed."""
    from modelport.explain import ExplainError
    from modelport.explain_cli import ExplainInputError, explain_csv

    try:
        result = explain_csv(model, csv, out_file, all_classes=all_classes)
    except (ExplainInputError, ExplainError) as exc:
        raise _fail(str(exc)) from None
    ex = result.explanation
    table = Table(title=f"{result.tag}: {ex.method}, {ex.output}, {len(ex.predictions)} rows")
    for col in ("feature", "mean |attribution|", "mean attribution"):
        table.add_column(col)
    for name, mean_abs, mean in result.top(top):
        table.add_row(name, f"{mean_abs:.6g}", f"{mean:+.6g}")
    out.print(table)
    if result.ignored:
        console.print(f"ignored columns (not model features): {', '.join(result.ignored)}")
    out.print(f"attributions written to {result.out}")


# push, pull, sign, alias and resolve register themselves on `app`.
from modelport import registry_cli as _registry_cli  # noqa: E402, F401

# `modelport rollout ...` (canary releases) registers itself on `app`.
from modelport import rollout_cli as _rollout_cli  # noqa: E402, F401


def main() -> None:
    # BentoML sends usage events by default; a deployment tool should not.
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    # TensorFlow start-up chatter (oneDNN, CPU features) is noise for a CLI user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(app())
