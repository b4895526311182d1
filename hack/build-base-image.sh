#!/usr/bin/env bash
# Builds a local stand-in for the service image's base (python:<X.Y>-slim) from Debian
# packages and stores it in containers-storage under the exact name the generated
# Dockerfile's FROM resolves to, so `bentoml containerize` builds without any registry.
#
#   hack/build-base-image.sh [IMAGE]      IMAGE defaults to docker.io/library/python:3.11-slim
#
# What it does: debootstrap <suite> (minbase) + python3.11, pip, venv and ca-certificates
# from the apt mirror this machine is configured with; makes it look like the official
# image where the generated Dockerfile cares (python/pip on /usr/local/bin, pip may install
# system-wide, documentation left out like debian:*-slim); adds the CA certificates this
# machine's administrator added (a TLS-inspecting proxy's CA) to the image's trust store,
# so pip and uv verify TLS during the build; imports it with buildah (or podman).
#
# The debootstrap output is cached in .tools/base-image (rebuilt when its inputs change);
# an image that already exists is kept unless FORCE=1. Needs root (debootstrap, chroot).
# Environment: SUITE (default bookworm), MIRROR (default: from /etc/apt/sources*),
# HOST_CA_DIR (default /usr/local/share/ca-certificates), CACHE_DIR, FORCE.
set -euo pipefail

IMAGE=${1:-docker.io/library/python:3.11-slim}
SUITE=${SUITE:-bookworm}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
CACHE_DIR=${CACHE_DIR:-$ROOT_DIR/.tools/base-image}
FORCE=${FORCE:-0}
HOST_CA_DIR=${HOST_CA_DIR:-/usr/local/share/ca-certificates}
# Bumped when the customisation below changes, so cached roots are rebuilt.
RECIPE_VERSION=1

log() { printf '[base-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'build-base-image: %s\n' "$*" >&2; exit 1; }

# python:3.11-slim, docker.io/library/python:3.11-slim-bookworm, ... -> 3.11
tag=${IMAGE##*:}
[[ "$IMAGE" == *python:* && "$tag" =~ ^([0-9]+\.[0-9]+)(\.[0-9]+)?-slim ]] ||
  die "only python:<X.Y>-slim images have a stand-in here, not $IMAGE"
PY=${BASH_REMATCH[1]}
case "$SUITE:$PY" in
  bookworm:3.11) ;;
  *) die "Debian $SUITE does not ship Python $PY (bookworm has 3.11); set SUITE or the bento's python_version" ;;
esac

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and chroot); run it with sudo"
for tool in debootstrap tar; do
  command -v "$tool" >/dev/null || die "$tool not found: run 'make tools' (hack/install-system-deps.sh)"
done
if command -v buildah >/dev/null; then
  TOOL=buildah
elif command -v podman >/dev/null; then
  TOOL=podman
else
  die "neither buildah nor podman found: run 'make tools'"
fi

image_exists() {
  if [ "$TOOL" = buildah ]; then
    buildah inspect --type image "$IMAGE" >/dev/null 2>&1
  else
    podman image exists "$IMAGE"
  fi
}
if [ "$FORCE" != 1 ] && image_exists; then
  log "$IMAGE already in containers-storage (FORCE=1 rebuilds it)"
  exit 0
fi

# The mirror apt on this machine uses: deb822 sources first, then the one-line format.
if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [ -z "${MIRROR:-}" ] && [ -f /etc/apt/sources.list ]; then
  MIRROR=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}

PACKAGES="python${PY},python3-pip,python3-venv,ca-certificates"
mkdir -p "$CACHE_DIR"
ROOTFS_TAR="$CACHE_DIR/$SUITE-python$PY-rootfs.tar"
INPUTS="recipe=$RECIPE_VERSION suite=$SUITE mirror=$MIRROR packages=$PACKAGES"
WORK=$(mktemp -d "$CACHE_DIR/work.XXXXXX")
cleanup() {
  for fs in proc sys; do
    mountpoint -q "$WORK/rootfs/$fs" 2>/dev/null && umount -l "$WORK/rootfs/$fs"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
ROOTFS="$WORK/rootfs"
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

if [ -f "$ROOTFS_TAR" ] && [ "$(cat "$ROOTFS_TAR.inputs" 2>/dev/null)" = "$INPUTS" ]; then
  log "using cached root file system $ROOTFS_TAR"
  mkdir "$ROOTFS"
  tar -C "$ROOTFS" -xf "$ROOTFS_TAR"
else
  start=$SECONDS
  log "debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  log "debootstrap done in $((SECONDS - start))s"

  # Like debian:*-slim: no documentation, manuals or translations, now or in later apt runs.
  cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$ROOTFS"/usr/share/{man,groff,info,lintian,linda,locale}/*

  # The official image has its suite's updates and security fixes; so does the stand-in.
  cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -f "$ROOTFS/etc/apt/sources.list"
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  mount -t proc proc "$ROOTFS/proc"
  log "apt-get upgrade ($SUITE-updates, $SUITE-security)"
  { in_root apt-get update -qq && in_root apt-get -y -qq -o Dpkg::Options::=--force-confdef upgrade &&
      in_root apt-get clean; } >"$WORK/upgrade.log" 2>&1 ||
    { tail -n 30 "$WORK/upgrade.log" >&2; die "apt-get upgrade in the new root failed"; }
  umount -l "$ROOTFS/proc"
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS/etc/resolv.conf"
  : >"$ROOTFS/etc/resolv.conf"
  rm -rf "${ROOTFS:?}"/dev/* "${ROOTFS:?}"/proc/* "${ROOTFS:?}"/sys/* "${ROOTFS:?}"/tmp/*

  tar -C "$ROOTFS" --numeric-owner -cf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  printf '%s' "$INPUTS" >"$ROOTFS_TAR.inputs"
  log "cached root file system in $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
fi

# Where the generated Dockerfile looks: `pip install uv` and `uv venv --python X.Y` use
# whatever python/pip come first on PATH, which the official image has in /usr/local/bin.
for name in python python3 "python$PY"; do ln -sf "/usr/bin/python$PY" "$ROOTFS/usr/local/bin/$name"; done
for name in pip pip3 "pip$PY"; do ln -sf /usr/bin/pip3 "$ROOTFS/usr/local/bin/$name"; done
# The official image's pip installs into the system interpreter (no PEP 668 marker).
rm -f "$ROOTFS/usr/lib/python$PY/EXTERNALLY-MANAGED"

# Certificates this machine's administrator added to its trust store (Debian keeps them in
# /usr/local/share/ca-certificates; here, a TLS-inspecting proxy's CA). Public certificates,
# needed for the build's pip and uv downloads to verify TLS on this machine; added the
# Debian way so they survive any ca-certificates upgrade during the build.
shopt -s nullglob globstar
local_cas=("$HOST_CA_DIR"/**/*.crt)
if [ ${#local_cas[@]} -gt 0 ]; then
  cp "${local_cas[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
  in_root update-ca-certificates >/dev/null 2>&1
  log "trusting this machine's ${#local_cas[@]} local CA certificate(s) from $HOST_CA_DIR"
fi

log "importing into containers-storage as $IMAGE ($TOOL)"
tar -C "$ROOTFS" --numeric-owner -cf "$WORK/image.tar" .
ENVS=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
LABEL="org.opencontainers.image.description=modelport CI stand-in for python:$PY-slim (Debian $SUITE packages)"
if [ "$TOOL" = buildah ]; then
  ctr=$(buildah from --pull-never scratch)
  buildah add --quiet "$ctr" "$WORK/image.tar" / >/dev/null
  buildah config --env "${ENVS[0]}" --env "${ENVS[1]}" --cmd '["python3"]' --label "$LABEL" "$ctr"
  buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
else
  podman import --quiet --change "ENV ${ENVS[0]}" --change "ENV ${ENVS[1]}" \
    --change 'CMD ["python3"]' --change "LABEL $LABEL" "$WORK/image.tar" "$IMAGE" >/dev/null
fi
log "$IMAGE ready"
