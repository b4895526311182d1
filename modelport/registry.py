"""The model registry: model versions in an S3-compatible object store.

Layout under ``s3://BUCKET/PREFIX/``::

    NAME/VERSION/u-UPLOAD/files/PATH   every model file (BentoML's model.yaml aside)
    NAME/VERSION/u-UPLOAD/model.yaml   BentoML's model info: the card, the signature
    NAME/VERSION/published.json        the marker: which upload, each file's sha256
    NAME/_aliases/ALIAS.json           {"version": ..., "previous": ...}

A push uploads under a fresh upload id, then publishes by writing the marker with
``If-None-Match: *``: until then nothing is visible; of two pushes of one version
exactly one wins, and the other's objects never mix with it (other upload id). A
published version is never overwritten. A pull downloads into a staging folder of
the target BentoML home, checks every byte against the marker, the card's hashes and
(with a key) the signature, and only then renames it into ``models/``.

boto3 is imported here only, when a registry command runs.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelport.metadata import ModelCard, sha256_file, verify_model_files
from modelport.settings import ENV_PREFIX
from modelport.signing import SIGNATURE_KEY, SignatureError, model_files, verify_model

MARKER = "published.json"
ALIASES = "_aliases"
FORMAT = 1
PRODUCTION = "production"
_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
_ALIAS = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done, with a one-line reason."""


class RegistrySettings(BaseSettings):
    """Where the model registry is and how to reach it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    registry: str = Field(
        "",
        description="Model registry location, s3://BUCKET[/PREFIX] (AWS S3 or any "
        "S3-compatible store). Credentials come from the standard AWS chain.",
    )
    registry_endpoint_url: str = Field(
        "",
        description="S3 API endpoint for MinIO, Ceph and the like (default: "
        "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS).",
    )
    registry_timeout: float = Field(
        10, gt=0, description="Seconds to wait for the registry endpoint before giving up."
    )


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @classmethod
    def parse(cls, url: str) -> Location:
        m = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?", url.strip())
        if not m:
            raise RegistryError(
                f"MODELPORT_REGISTRY={url!r}: expected s3://BUCKET[/PREFIX]"
                if url
                else "no registry configured: set MODELPORT_REGISTRY=s3://BUCKET[/PREFIX]"
            )
        prefix = (m.group(2) or "").strip("/")
        return cls(m.group(1), f"{prefix}/" if prefix else "")


@dataclass
class Version:
    """A published version, as its marker describes it."""

    name: str
    version: str
    marker: dict[str, Any]
    aliases: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


def check_name(kind: str, value: str) -> str:
    pattern = _ALIAS if kind == "alias" else _NAME
    if not pattern.fullmatch(value):
        raise RegistryError(
            f"{kind} {value!r}: use lower-case letters, digits"
            + (", '-'" if kind == "alias" else ", '-', '_', '.'")
            + (" starting with a letter" if kind == "alias" else "")
        )
    return value


def split_ref(ref: str) -> tuple[str, str | None]:
    name, _, rest = ref.partition(":")
    check_name("model name", name)
    return name, rest or None


class Registry:
    """One registry location, reached with boto3's default credential chain."""

    def __init__(self, settings: RegistrySettings | None = None) -> None:
        self.settings = settings or RegistrySettings()
        self.location = Location.parse(self.settings.registry)
        self._client: Any = None

    # -- plumbing -------------------------------------------------------------------

    @property
    def endpoint(self) -> str | None:
        return (
            self.settings.registry_endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session()
            timeout = self.settings.registry_timeout
            self._client = session.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=session.region_name or "us-east-1",
                config=Config(
                    connect_timeout=timeout,
                    read_timeout=timeout,
                    retries={"max_attempts": 2, "mode": "standard"},
                    # MinIO and most self-hosted stores serve buckets by path only.
                    s3={"addressing_style": "path" if self.endpoint else "auto"},
                ),
            )
        return self._client

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn boto3's exceptions into one line naming the registry and the cause."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            NoCredentialsError,
        )

        where = self.location.url + (f" at {self.endpoint}" if self.endpoint else "")
        try:
            yield
        except NoCredentialsError:
            raise RegistryError(
                f"{what}: no S3 credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "a profile, or web identity)"
            ) from None
        except ConnectionError as exc:
            raise RegistryError(f"{what}: registry {where} is unreachable ({exc})") from None
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "?"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403") or (
                status == 403
            ):
                raise RegistryError(
                    f"{what}: access to {where} denied ({code}): check the credentials"
                ) from None
            if code == "NoSuchBucket":
                raise RegistryError(
                    f"{what}: bucket {self.location.bucket!r} does not exist at {where}"
                ) from None
            raise RegistryError(f"{what}: {where}: {code}: {err.get('Message', '')}") from None
        except BotoCoreError as exc:
            raise RegistryError(f"{what}: {where}: {exc}") from None

    def _key(self, *parts: str) -> str:
        return self.location.prefix + "/".join(parts)

    def _get_json(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            data = json.loads(body)
        except ValueError:
            raise RegistryError(f"{key}: not valid JSON") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{key}: not a JSON object")
        return data

    def _put_json(self, key: str, data: dict[str, Any], *, create_only: bool = False) -> bool:
        """Write ``data``; with ``create_only``, only if the key does not exist yet
        (False if another writer got there first)."""
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if create_only else {}
        try:
            self.client.put_object(
                Bucket=self.location.bucket,
                Key=key,
                Body=json.dumps(data, indent=1, sort_keys=True).encode(),
                ContentType="application/json",
                **extra,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if create_only and code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def _keys(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"]

    # -- reading --------------------------------------------------------------------

    def marker(self, name: str, version: str) -> dict[str, Any] | None:
        with self._errors(f"{name}:{version}"):
            return self._get_json(self._key(name, version, MARKER))

    def aliases(self, name: str) -> dict[str, dict[str, Any]]:
        with self._errors(name):
            found = {}
            for key in self._keys(self._key(name, ALIASES) + "/"):
                alias = key.rsplit("/", 1)[-1].removesuffix(".json")
                data = self._get_json(key)
                if data is not None:
                    found[alias] = data
            return found

    def versions(self, name: str | None = None) -> list[Version]:
        """Every published version (of ``name``), newest push first, with its aliases."""
        what = name or "list"
        with self._errors(what):
            if name is not None:
                check_name("model name", name)
            prefix = self._key(name) + "/" if name else self.location.prefix
            found: list[Version] = []
            pattern = re.compile(re.escape(self.location.prefix) + r"([^/]+)/([^/]+)/" + MARKER)
            for key in self._keys(prefix):
                m = pattern.fullmatch(key)
                if m and m.group(2) != ALIASES:
                    marker = self._get_json(key)
                    if marker is not None:
                        found.append(Version(m.group(1), m.group(2), marker))
        for n in {v.name for v in found}:
            pointers = self.aliases(n)
            for v in found:
                if v.name == n:
                    v.aliases = sorted(
                        a for a, p in pointers.items() if p.get("version") == v.version
                    )
        newest_first = sorted(found, key=lambda v: str(v.marker.get("pushed", "")), reverse=True)
        return sorted(newest_first, key=lambda v: v.name)

    def resolve(self, ref: str) -> tuple[str, str]:
        """``NAME:VERSION``, ``NAME:ALIAS`` or ``NAME`` (its production alias, else the
        newest push) to an exact published version."""
        name, wanted = split_ref(ref)
        if wanted is not None:
            if self.marker(name, wanted) is not None:
                return name, wanted
            with self._errors(ref):
                pointer = self._get_json(self._key(name, ALIASES, f"{wanted}.json"))
            if pointer is None:
                raise RegistryError(
                    f"{ref}: no such version or alias in {self.location.url}" + self._known(name)
                )
            return name, str(pointer["version"])
        with self._errors(ref):
            pointer = self._get_json(self._key(name, ALIASES, f"{PRODUCTION}.json"))
        if pointer is not None:
            return name, str(pointer["version"])
        versions = self.versions(name)
        if not versions:
            raise RegistryError(f"no model {name!r} in {self.location.url}")
        return name, versions[0].version

    def _known(self, name: str) -> str:
        versions = self.versions(name)
        if not versions:
            return f" (no model {name!r} there at all)"
        aliases = sorted({a for v in versions for a in v.aliases})
        listed = ", ".join(v.version for v in versions[:5])
        return f" (versions: {listed}" + (f"; aliases: {', '.join(aliases)})" if aliases else ")")

    # -- pushing --------------------------------------------------------------------

    def stage(self, model_dir: Path) -> dict[str, Any]:
        """Upload a model under a fresh upload id; returns the marker to publish.
        Nothing is visible until :meth:`publish`."""
        import bentoml

        model = bentoml.models.Model.from_path(str(model_dir))
        name, version = model.tag.name, str(model.tag.version)
        try:
            card = ModelCard.from_metadata(model.info.metadata)
        except ValueError as exc:
            raise RegistryError(f"{model.tag}: {exc}") from None
        problems = verify_model_files(model_dir, card.integrity.files)
        if problems:
            raise RegistryError(
                f"{model.tag}: local files do not match the card: {'; '.join(problems)}"
            )
        if self.marker(name, version) is not None:
            raise RegistryError(
                f"{model.tag} is already in {self.location.url}; a published version is "
                "never overwritten"
            )
        # The stage is a local label; across machines aliases say which is production.
        model.info.labels.pop("stage", None)
        buf = io.StringIO()
        model.info.dump(buf)
        info = buf.getvalue().encode()
        upload = uuid.uuid4().hex[:16]
        base = self._key(name, version, f"u-{upload}")
        files: dict[str, dict[str, Any]] = {}
        with self._errors(f"push {model.tag}"):
            for rel in model_files(model_dir):
                path = model_dir / rel
                self.client.upload_file(
                    str(path), self.location.bucket, f"{base}/files/{rel.as_posix()}"
                )
                files[rel.as_posix()] = {"sha256": sha256_file(path), "size": path.stat().st_size}
            self.client.put_object(Bucket=self.location.bucket, Key=f"{base}/model.yaml", Body=info)
        keys = ("accuracy", "roc_auc", "f1") if card.task == "classification" else ("r2", "rmse")
        return {
            "format": FORMAT,
            "name": name,
            "version": version,
            "upload": upload,
            "files": files,
            "info_sha256": hashlib.sha256(info).hexdigest(),
            "signed": bool(model.info.metadata.get(SIGNATURE_KEY)),
            "framework": card.framework,
            "task": card.task,
            "metrics": {k: card.evaluation.test[k] for k in keys if k in card.evaluation.test},
            "created": model.info.creation_time.isoformat(),
            "pushed": datetime.now(UTC).isoformat(),
            "pushed_by": f"{_user()}@{socket.gethostname()}",
        }

    def publish(self, marker: dict[str, Any]) -> str:
        """Make a staged upload the version, unless another push published it first."""
        name, version = marker["name"], marker["version"]
        with self._errors(f"publish {name}:{version}"):
            won = self._put_json(self._key(name, version, MARKER), marker, create_only=True)
            if not won:
                self._delete_upload(name, version, marker["upload"])
                raise RegistryError(
                    f"{name}:{version} was published by another push meanwhile; "
                    "a published version is never overwritten"
                )
        return f"{self.location.url}/{name}/{version}"

    def push(self, model_dir: Path) -> str:
        return self.publish(self.stage(model_dir))

    def _delete_upload(self, name: str, version: str, upload: str) -> None:
        keys = list(self._keys(self._key(name, version, f"u-{upload}") + "/"))
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.location.bucket,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )

    # -- aliases --------------------------------------------------------------------

    def set_alias(self, ref: str, alias: str) -> tuple[str, str | None]:
        """Point ``alias`` of a model at an exact published version; returns the version
        and the one it pointed at before."""
        check_name("alias", alias)
        name, version = split_ref(ref)
        if version is None:
            raise RegistryError(f"give NAME:VERSION to point {alias!r} at, got {ref!r}")
        if self.marker(name, version) is None:
            raise RegistryError(
                f"{ref}: no such version in {self.location.url}" + self._known(name)
            )
        key = self._key(name, ALIASES, f"{alias}.json")
        with self._errors(f"alias {name}:{alias}"):
            old = self._get_json(key)
            previous = str(old["version"]) if old else None
            self._put_json(
                key,
                {
                    "alias": alias,
                    "version": version,
                    "previous": previous,
                    "updated": datetime.now(UTC).isoformat(timespec="seconds"),
                    "updated_by": f"{_user()}@{socket.gethostname()}",
                },
            )
        return version, previous

    # -- pulling --------------------------------------------------------------------

    def pull(self, ref: str, home: Path, verify_key: Path | None = None) -> tuple[str, bool]:
        """Bring a version into the model store of BentoML home ``home``, verified.
        Returns the exact tag and whether it was downloaded (False: already there)."""
        name, version = self.resolve(ref)
        tag = f"{name}:{version}"
        marker = self.marker(name, version)
        if marker is None:
            raise RegistryError(f"{tag}: no such version in {self.location.url}")
        store = home / "models"
        target = store / name / version
        if target.is_dir():
            check_local(target, tag, verify_key)
            return tag, False
        home.mkdir(parents=True, exist_ok=True)
        # Staged beside models/ (same filesystem, so the final rename is atomic) and
        # outside it: BentoML would take any folder in models/ for a model.
        staging = Path(tempfile.mkdtemp(prefix=".modelport-pull-", dir=home))
        try:
            self._download(marker, staging)
            check_local(staging, tag, verify_key)
            (store / name).mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, target)
            except OSError:
                if not target.is_dir():
                    raise
                return tag, False  # a concurrent pull of the same version won
            # BentoML recomputes its "latest" pointer from creation times when absent.
            (store / name / "latest").unlink(missing_ok=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return tag, True

    def _download(self, marker: dict[str, Any], into: Path) -> None:
        name, version = marker["name"], marker["version"]
        base = self._key(name, version, f"u-{marker['upload']}")
        tag = f"{name}:{version}"
        with self._errors(f"pull {tag}"):
            for rel, meta in marker["files"].items():
                path = into / rel
                if not path.resolve().is_relative_to(into.resolve()):
                    raise RegistryError(f"{tag}: marker names a file outside the model: {rel}")
                path.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.location.bucket, f"{base}/files/{rel}", str(path))
                if sha256_file(path) != meta["sha256"]:
                    raise RegistryError(f"{tag}: {rel}: content differs from the published hash")
            info = into / "model.yaml"
            self.client.download_file(self.location.bucket, f"{base}/model.yaml", str(info))
        if sha256_file(info) != marker.get("info_sha256"):
            raise RegistryError(f"{tag}: model.yaml differs from the published hash")


def check_local(model_dir: Path, tag: str, verify_key: Path | None) -> None:
    """A model folder is the version it claims, matches its card and (with a key) its
    signature; raises :class:`RegistryError` with the reason."""
    import bentoml

    try:
        model = bentoml.models.Model.from_path(str(model_dir))
    except Exception as exc:  # BentoML's own parse errors are varied
        raise RegistryError(f"{tag}: unreadable model.yaml ({exc})") from None
    if str(model.tag) != tag:
        raise RegistryError(f"{tag}: the model inside is {model.tag}")
    try:
        card = ModelCard.from_metadata(model.info.metadata)
    except ValueError as exc:
        raise RegistryError(f"{tag}: invalid model card: {' '.join(str(exc).split())}") from None
    problems = verify_model_files(model_dir, card.integrity.files)
    if problems:
        raise RegistryError(f"{tag}: integrity check failed: {'; '.join(problems)}")
    if verify_key is not None:
        try:
            verify_model(model_dir, model.info.metadata, verify_key)
        except SignatureError as exc:
            raise RegistryError(f"{tag}: {exc}") from None


def default_home() -> Path:
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return str(os.getuid())
