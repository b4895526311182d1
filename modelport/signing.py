"""Model signatures with OpenSSF ``model-signing`` (key-based, offline).

What is signed is a *view* of a model: every file of its directory except BentoML's
``model.yaml`` (which also holds mutable labels such as the stage), plus the model
card as canonical JSON under the name ``modelport-card.json``. The card is taken from
the raw ``modelport`` metadata entry, so a card written by older code verifies under
newer code. The signature (a Sigstore bundle, JSON) is stored in the model's metadata
under ``modelport_signature``: the model directory gets no extra file, so the
per-file hash check of the card keeps working unchanged.

``model_signing`` is imported only when signing or verifying: the service never pays
for it without a verification key.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelport.metadata import METADATA_KEY

SIGNATURE_KEY = "modelport_signature"
CARD_FILE = "modelport-card.json"
INFO_FILE = "model.yaml"

log = logging.getLogger("modelport")
_warned_unenforced = False


class SignatureError(ValueError):
    """A model whose signature is missing, malformed or does not match (one line)."""


def card_bytes(metadata: Mapping[str, Any]) -> bytes:
    """The card exactly as signed: canonical JSON of the raw metadata entry."""
    try:
        card = metadata[METADATA_KEY]
    except KeyError:
        raise SignatureError("no modelport model card in the metadata") from None
    return json.dumps(card, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def model_files(model_dir: Path) -> list[Path]:
    """The files a signature covers, relative to the model directory."""
    files = []
    for p in sorted(model_dir.rglob("*")):
        rel = p.relative_to(model_dir)
        # model.yaml and its atomic-replace temporaries hold the signature itself.
        is_info = rel == Path(INFO_FILE) or rel.name.startswith(f".{INFO_FILE}.")
        if not p.is_file() or is_info:
            continue
        files.append(rel)
    if Path(CARD_FILE) in files:
        raise SignatureError(f"the model has a file named {CARD_FILE}, which is reserved")
    return files


def write_view(model_dir: Path, metadata: Mapping[str, Any], into: Path) -> Path:
    """Lay out the signed view in ``into``: symlinks to the model files and the card.

    Symlinks cost nothing for large models; ``model_signing`` hashes their targets.
    """
    for rel in model_files(model_dir):
        link = into / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((model_dir / rel).resolve())
    (into / CARD_FILE).write_bytes(card_bytes(metadata))
    return into


def _hashing() -> Any:
    from model_signing import hashing

    # Every file counts (no git-path exemptions); symlinks are the view's own links.
    return (
        hashing.Config()
        .use_file_serialization(hashing_algorithm="sha256", allow_symlinks=True)
        .set_ignored_paths(paths=[], ignore_git_paths=False)
        .set_allow_symlinks(True)
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 400 else text[:397] + "..."


def check_private_key(path: Path, password: str | None = None) -> None:
    """Refuse anything but a readable elliptic-curve private key PEM, with the reason."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password.encode() if password else None)
    except OSError as exc:
        raise SignatureError(f"signing key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"signing key {path}: not a usable PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SignatureError(f"signing key {path}: not an elliptic-curve key (P-256/384/521)")


def check_public_key(path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise SignatureError(f"verification key {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise SignatureError(
            f"verification key {path}: not a PEM public key (give the public half, "
            "`openssl ec -in key.pem -pubout`)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError(f"verification key {path}: not an elliptic-curve key")


def sign_dir(
    model_dir: Path, metadata: Mapping[str, Any], private_key: Path, password: str | None = None
) -> str:
    """Sign a model directory and its card; returns the signature bundle (JSON text)."""
    from model_signing import signing

    check_private_key(private_key, password)
    with tempfile.TemporaryDirectory(prefix="modelport-sign-") as tmp:
        view = write_view(model_dir, metadata, Path(tmp) / "model")
        sig = Path(tmp) / "model.sig"
        try:
            (
                signing.Config()
                .use_elliptic_key_signer(private_key=private_key, password=password)
                .set_hashing_config(_hashing())
                .sign(view, sig)
            )
        except Exception as exc:  # the library's errors vary by key and file problem
            raise SignatureError(f"signing failed: {_one_line(exc)}") from None
        return sig.read_text()


def sign_model(model_dir: Path, private_key: Path, password: str | None = None) -> str:
    """Sign a model of a BentoML store in place (the signature goes into its metadata)."""
    import bentoml

    from modelport.store import write_info

    model = bentoml.models.Model.from_path(str(model_dir))
    metadata = dict(model.info.metadata)
    metadata.pop(SIGNATURE_KEY, None)
    bundle = sign_dir(model_dir, metadata, private_key, password)
    model.info.metadata[SIGNATURE_KEY] = bundle
    write_info(model)
    return bundle


def verify_model(path: Path, metadata: Mapping[str, Any], key: Path) -> None:
    """Check a model directory and the card in ``metadata`` against the signature in
    ``metadata`` with the public ``key``; raises :class:`SignatureError` saying why."""
    from model_signing import verifying

    bundle = metadata.get(SIGNATURE_KEY)
    if not bundle:
        raise SignatureError("not signed (a verification key is configured)")
    if not isinstance(bundle, str):
        raise SignatureError("malformed signature in the metadata")
    check_public_key(key)
    with tempfile.TemporaryDirectory(prefix="modelport-verify-") as tmp:
        view = write_view(path, metadata, Path(tmp) / "model")
        sig = Path(tmp) / "model.sig"
        sig.write_text(bundle)
        try:
            (
                verifying.Config()
                .use_elliptic_key_verifier(public_key=key)
                .set_hashing_config(_hashing())
                .verify(view, sig)
            )
        except Exception as exc:  # bad bundle, wrong key or changed content
            raise SignatureError(f"signature check failed: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The library's mismatch report (a list of digests) as a short list of names."""
    text = str(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed signature bundle ({_one_line(exc)})"
    if not text.strip():  # cryptography's InvalidSignature carries no message
        return f"the signature does not match this key or was altered ({type(exc).__name__})"
    if not text.startswith("Signature mismatch"):
        return _one_line(exc)

    def name(file: str) -> str:
        return "the model card" if file == CARD_FILE else file

    changed = [name(f) for f in re.findall(r"Hash mismatch for \\?'([^'\\]+)\\?'", text)]
    parts = [f"{', '.join(changed)} changed"] if changed else []
    for kind, files in re.findall(r"(Extra|Missing) files [^:]*: ([^'\"\]]+)", text):
        what = "not signed" if kind == "Extra" else "missing"
        parts.append(f"{', '.join(name(f.strip()) for f in files.split(','))} {what}")
    return "; ".join(parts) or _one_line(exc)


def check_on_load(path: Path, metadata: Mapping[str, Any], key: Path | None) -> None:
    """The service's signature gate: verify with ``key``, or say once that signatures
    are not enforced."""
    global _warned_unenforced
    if key is None:
        if not _warned_unenforced:
            _warned_unenforced = True
            log.warning(
                "model signatures are not enforced (MODELPORT_VERIFY_KEY is not set); "
                "only the card's file hashes are checked"
            )
        return
    verify_model(path, metadata, key)
