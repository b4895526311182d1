"""Registry and signing commands: ``push``, ``pull``, ``alias``, ``resolve``, ``sign``
(registered on the ``modelport`` app), and ``models --registry`` /
``promote --registry``.

Every failure (no registry configured, no such model or alias, unreachable endpoint,
wrong credentials, a bad key, a tampered model) is one line on stderr and exit 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from modelport.cli import _fail, app, console, out

KEY_HELP = "Elliptic-curve private key (PEM) to sign with (OpenSSF model-signing)."


@contextmanager
def _one_line() -> Iterator[None]:
    from modelport.registry import RegistryError
    from modelport.signing import SignatureError
    from modelport.store import StoreError

    try:
        yield
    except (RegistryError, SignatureError, StoreError) as exc:
        from rich.markup import escape

        # Messages hold brackets (s3://BUCKET[/PREFIX]) that rich would read as markup.
        raise _fail(escape(str(exc))) from None


def _registry() -> Any:
    from modelport.registry import Registry

    return Registry()


def _local_dir(tag: str) -> Path:
    from modelport import store

    return Path(store.resolve(tag).path)


@app.command()
def sign(
    tag: Annotated[str, typer.Argument(help="NAME[:VERSION] in the local store.")],
    key: Annotated[Path, typer.Option("--key", help=KEY_HELP)],
) -> None:
    """Sign a model of the local store: every file and the model card."""
    from modelport import signing

    with _one_line():
        model_dir = _local_dir(tag)
        signing.sign_model(model_dir, key)
    out.print(f"signed {model_dir.parent.name}:{model_dir.name}", highlight=False)


@app.command()
def push(
    tag: Annotated[str, typer.Argument(help="NAME[:VERSION] in the local store.")],
    sign_key: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--sign-key", help=KEY_HELP + " Signs before uploading."),
    ] = None,
) -> None:
    """Upload a model version (files, card, signature) to the registry (MODELPORT_REGISTRY).
    A version already there is never overwritten."""
    from modelport import signing

    with _one_line():
        model_dir = _local_dir(tag)
        registry = _registry()
        if sign_key is not None:
            signing.sign_model(model_dir, sign_key)
            console.print(f"signed {model_dir.parent.name}:{model_dir.name}", highlight=False)
        url = registry.push(model_dir)
    out.print(url, highlight=False)


@app.command()
def pull(
    ref: Annotated[
        str, typer.Argument(help="NAME:VERSION, NAME:ALIAS, or NAME (its production alias).")
    ],
    into: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--into",
            help="BentoML home to pull into (its models/ folder); default: BENTOML_HOME.",
        ),
    ] = None,
    verify_key: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--verify-key",
            help="Public key (PEM) the model's signature must verify with; default: "
            "MODELPORT_VERIFY_KEY. Without one, only the published hashes are checked.",
        ),
    ] = None,
) -> None:
    """Download a model version from the registry into a local store, verified first.
    Prints the exact NAME:VERSION."""
    from modelport.registry import default_home
    from modelport.settings import ServiceSettings

    key = verify_key or ServiceSettings().verify_key
    with _one_line():
        tag, downloaded = _registry().pull(ref, into or default_home(), key)
    if key is None:
        console.print(
            "warning: no verification key: signatures are not enforced (--verify-key)",
            highlight=False,
        )
    console.print(f"{tag}: {'pulled' if downloaded else 'already in the store'}")
    out.print(tag, highlight=False)


@app.command()
def resolve(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION, NAME:ALIAS or NAME.")],
) -> None:
    """Print the exact registry version NAME:VERSION a reference names (for pinning)."""
    with _one_line():
        name, version = _registry().resolve(ref)
    out.print(f"{name}:{version}", highlight=False)


@app.command()
def alias(
    tag: Annotated[str, typer.Argument(help="NAME:VERSION published in the registry.")],
    name: Annotated[str, typer.Argument(help="Alias, e.g. production, candidate, canary.")],
) -> None:
    """Point a registry alias of a model at one exact version."""
    with _one_line():
        version, previous = _registry().set_alias(tag, name)
    model = tag.partition(":")[0]
    moved = f" (was {previous})" if previous and previous != version else ""
    out.print(f"{model}:{name} -> {version}{moved}", highlight=False)


def promote_registry(tag: str) -> None:
    """``promote --registry``: move the registry's production alias."""
    with _one_line():
        version, previous = _registry().set_alias(tag, "production")
    model = tag.partition(":")[0]
    if previous and previous != version:
        console.print(f"production was {model}:{previous}", highlight=False)
    out.print(f"{model}:{version} is now the registry's production version", highlight=False)


def list_registry(name: str | None) -> None:
    """``models --registry``: published versions with aliases and headline metrics."""
    with _one_line():
        registry = _registry()
        versions = registry.versions(name)
    rows = []
    for v in versions:
        m = v.marker
        metrics = "  ".join(f"{k} {val:.3f}" for k, val in (m.get("metrics") or {}).items())
        rows.append(
            [
                v.tag,
                str(m.get("framework", "?")),
                str(m.get("task", "?")),
                ", ".join(v.aliases) or "-",
                "yes" if m.get("signed") else "no",
                metrics,
                str(m.get("pushed", "?"))[:16].replace("T", " "),
            ]
        )
    from rich.table import Table

    table = Table(title=registry.location.url, show_header=True, title_justify="left")
    for col in ("tag", "framework", "task", "aliases", "signed", "metrics", "pushed"):
        table.add_column(col, no_wrap=col == "tag", overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table)
