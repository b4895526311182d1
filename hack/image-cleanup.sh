#!/bin/sh
# Runs inside the image build after the Python packages are installed (bentofile.yaml
# docker.setup_script). BentoML's Debian recipe installs build-essential, git and gnupg2 in
# case a package compiles from source, and pip-installs uv to install the rest; nothing
# needs them at run time, so they go, with apt's lists, the download caches and the
# libraries' test suites. The build squashes its layers (modelport/image.py), so this
# makes the image smaller too; the build fails if a compiler survives.
set -eu
export DEBIAN_FRONTEND=noninteractive
echo "image-cleanup: removing build-only packages"
# Recommends must not keep the toolchain: Debian's python3-pip, say, recommends it.
apt-get purge -y -q --auto-remove -o APT::AutoRemove::RecommendsImportant=false \
  -o APT::AutoRemove::SuggestsImportant=false build-essential git gnupg2 >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log
# The libraries' own test suites (pandas, scipy, numpy, sklearn: ~100 MB) are never
# imported by the service.
find "${VIRTUAL_ENV:-/app/.venv}" -type d -name tests -prune -exec rm -rf {} +
# uv came from the base interpreter's pip (the service's venv has no pip).
PATH=/usr/local/bin:/usr/bin:/bin python3 -m pip uninstall -y -q uv >/dev/null 2>&1 || true
# /root is the host's download cache when the build mounts one there; never empty that.
# (The build runs this as root, so ~root is the image's /root.)
if ! grep -qs ' /root ' /proc/self/mountinfo; then
  rm -rf ~root/.cache
fi
for tool in gcc cc g++ c++ make git uv; do
  if command -v "$tool" >/dev/null 2>&1; then
    echo "image-cleanup: $tool is still installed: $(command -v "$tool")" >&2
    exit 1
  fi
done
