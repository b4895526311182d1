"""The ``modelport`` command line."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="modelport",
    help="Train, serve and deploy machine-learning models on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

EXIT_DATA = 2  # bad input data or arguments
EXIT_GATE = 3  # quality gate refused the model


def _fail(message: str, code: int = EXIT_DATA) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


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
        typer.Option(help="Task for --csv (default: inferred from the target)."),
    ] = None,
    framework: Annotated[FrameworkOpt, typer.Option(help="Framework for --csv.")] = (
        FrameworkOpt.sklearn
    ),
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Model name in the store (default: the recipe name)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Register even if the quality gate fails.")
    ] = False,
    promote: Annotated[
        bool, typer.Option("--promote", help="Label the new version stage=production.")
    ] = False,
) -> None:
    """Train, evaluate and register a model (quality-gated)."""
    from modelport.settings import TrainingSettings
    from training.data import DataError, frame_sha256, load_csv, validate_frame
    from training.recipes import RECIPES
    from training.run import train as run_train

    settings = TrainingSettings()
    try:
        if (recipe is None) == (csv is None):
            raise _fail("give either a RECIPE or --csv PATH (with --target and --name)")
        if recipe is not None:
            if recipe not in RECIPES:
                raise _fail(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
            r = RECIPES[recipe]
            frame = r.load()
            X, y, resolved = validate_frame(
                frame,
                r.target,
                source=f"recipe {r.name}",
                task=r.task,
                min_rows=settings.min_rows,
                max_categories=settings.max_categories,
            )
            from training.data import Dataset

            data = Dataset(X, y, resolved, f"sklearn.datasets ({r.name})", frame_sha256(frame))
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
            )
            fw, model_name = framework.value, name
    except DataError as exc:
        raise _fail(str(exc)) from None
    _check_name(model_name)
    if fw == "keras":
        _require_tensorflow()

    result = run_train(
        data,
        name=model_name,
        framework=fw,
        settings=settings,
        console=console,
        force=force,
        stage="production" if promote else "staging",
    )
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


@app.command("models")
def list_models(
    name: Annotated[Optional[str], typer.Argument(help="Only this model name.")] = None,  # noqa: UP045
) -> None:
    """List the models in the store with their stage and headline metrics."""
    from bentoml.exceptions import NotFound

    from modelport import store

    table = Table(show_header=True)
    for col in ("tag", "framework", "task", "stage", "metrics", "created"):
        table.add_column(col)
    try:
        models = store.list_models(name)
    except NotFound:
        models = []
    for m in models:
        try:
            card = store.card_of(m)
            keys = (
                ("accuracy", "roc_auc", "f1")
                if card.task == "classification"
                else ("r2", "rmse", "mae")
            )
            metrics = "  ".join(f"{k} {card.evaluation.test[k]:.3f}" for k in keys)
        except store.StoreError:
            metrics = "(not a modelport model)"
        labels = m.info.labels
        table.add_row(
            str(m.tag),
            labels.get("framework", "?"),
            labels.get("task", "?"),
            labels.get("stage", "-"),
            metrics,
            m.info.creation_time.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


@app.command()
def promote(
    tag: Annotated[str, typer.Argument(help="NAME:VERSION to label stage=production.")],
) -> None:
    """Make one version the production version (the previous one is archived)."""
    from modelport import store

    try:
        model, demoted = store.promote(tag)
    except store.StoreError as exc:
        raise _fail(str(exc)) from None
    for old in demoted:
        console.print(f"archived {old.tag}")
    out.print(f"{model.tag} is now stage=production")


@app.command()
def config() -> None:
    """Show every MODELPORT_* setting, its current value and what it does."""
    from modelport.settings import ENV_PREFIX, ServiceSettings, TrainingSettings

    for cls in (TrainingSettings, ServiceSettings):
        table = Table(title=cls.__doc__, show_header=True)
        table.add_column("variable")
        table.add_column("value")
        table.add_column("description")
        current = cls()
        for field_name, field in cls.model_fields.items():
            table.add_row(
                f"{ENV_PREFIX}{field_name.upper()}",
                str(getattr(current, field_name)),
                field.description or "",
            )
        out.print(table)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (BENTOML_PORT also works).")] = 3000,
    models: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Comma-separated model tags (default: MODELPORT_MODELS)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve models with BentoML on 127.0.0.1 (foreground; Ctrl-C stops)."""
    from modelport import server

    proc = server.start(port, models=models, workers=workers, log=None)
    proc.stdout = None
    try:
        sys.exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        sys.exit(proc.wait())


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
    import json
    import subprocess
    import tempfile
    import urllib.request

    from modelport import server, store

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
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.gettempdir()) / f"modelport-demo-{port}.log"
    console.rule(f"serving on {url}")
    proc = server.start(port, models=",".join(DEMO_RECIPES), log=log)
    try:
        seconds = server.wait_ready(url, proc)
        console.print(f"ready in {seconds:.1f}s (server log: {log})")
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
                + (
                    f"probabilities={answer['probabilities']}"
                    if answer.get("probabilities")
                    else ""
                )
            )
            first = first or (entry, body)
        if first:
            out.print("\nTry it:", style="bold")
            out.print(
                f"curl -s -X POST {url}/predict -H 'Content-Type: application/json' "
                f"-d '{first[1].decode()}'",
                soft_wrap=True,
                highlight=False,
            )
        out.print(f"Metrics: {url}/metrics   Models: {url}/models   Docs: {url}/", highlight=False)
        if once:
            return
        out.print("Serving; Ctrl-C stops.")
        proc.wait()
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as exc:
        raise _fail(f"{exc}; see {log}", 1) from None
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    # BentoML sends usage events by default; a deployment tool should not.
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    # TensorFlow start-up chatter (oneDNN, CPU features) is noise for a CLI user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(app())
