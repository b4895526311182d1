"""The pod's pull step: ``python -m modelport.pull NAME:VERSION... --into DIR``.

What the chart's init container runs in registry mode (``model.source: registry``): each
model is downloaded from the registry (MODELPORT_REGISTRY, the standard AWS credential
chain) and verified (hashes; the signature too with MODELPORT_VERIFY_KEY) before it enters
``DIR/models``, the emptyDir the server then reads as its model store. The service image
carries neither typer nor rich, so this is argparse over :class:`modelport.registry.Registry`
rather than ``modelport pull``; the behaviour is the same. Exact versions only: the pod
template must name what the pod serves (resolve an alias with ``modelport resolve``).

Prints one line per model; any failure is one line on stderr and exit 2, which keeps the
pod from starting (the kubelet retries the init container with back-off).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_FAILED = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelport.pull",
        description="Pull exact model versions from the registry into a BentoML home, verified.",
    )
    parser.add_argument("tags", nargs="+", metavar="NAME:VERSION", help="Exact model versions.")
    parser.add_argument(
        "--into", type=Path, required=True, help="BentoML home; models land in its models/."
    )
    parser.add_argument(
        "--bento-models",
        type=Path,
        default=None,
        help="The image's bento model store, copied in first: `bentoml serve` resolves every "
        "model the bento declares at start, from the store that replaces it.",
    )
    parser.add_argument(
        "--verify-key",
        type=Path,
        default=None,
        help="Public key (PEM) signatures must verify with (default: MODELPORT_VERIFY_KEY).",
    )
    return parser.parse_args(argv)


def copy_bento_models(source: Path, store: Path) -> None:
    """The image's own models into the pulled store (those already there are kept). They
    are not served unless MODELPORT_MODELS names them; BentoML only checks they exist."""
    import shutil

    for model_dir in sorted(source.glob("*/*/model.yaml")):
        version_dir = model_dir.parent
        target = store / version_dir.parent.name / version_dir.name
        if not target.exists():
            shutil.copytree(version_dir, target)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tag in args.tags:
        name, _, version = tag.partition(":")
        if not name or not version:
            print(
                f"modelport.pull: {tag!r}: an exact NAME:VERSION is required "
                "(resolve an alias first: modelport resolve NAME:ALIAS)",
                file=sys.stderr,
            )
            return EXIT_FAILED
    from modelport.registry import Registry, RegistryError
    from modelport.settings import ServiceSettings
    from modelport.signing import SignatureError

    try:
        key = args.verify_key or ServiceSettings().verify_key
        registry = Registry()
        # Every version is checked before anything is written: a bad one leaves no trace.
        for tag in args.tags:
            name, version = registry.resolve(tag)
            if f"{name}:{version}" != tag:
                # NAME:X falls back to the alias X: the pod template would not name its model.
                raise RegistryError(
                    f"{tag}: not a published version but an alias (of {name}:{version}); "
                    "set the exact version"
                )
        if args.bento_models is not None:
            copy_bento_models(args.bento_models, args.into / "models")
        for tag in args.tags:
            start = time.monotonic()
            exact, downloaded = registry.pull(tag, args.into, key)
            how = "pulled" if downloaded else "already present, re-verified"
            signed = "signature verified" if key else "signatures not enforced (no key)"
            print(
                f"modelport.pull: {exact}: {how} from {registry.location.url} in "
                f"{time.monotonic() - start:.1f}s; {signed}",
                flush=True,
            )
    except (RegistryError, SignatureError, ValueError, OSError) as exc:
        print(f"modelport.pull: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
