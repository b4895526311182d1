#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks run for real:
#   prometheus  - a Prometheus server (and promtool) for scrape and rule tests
#   wrk         - the HTTP load generator of the benchmark suite (bench/)
#   buildah, podman, runc, debootstrap, uidmap, netavark, iptables
#               - the image tests (tests/image): build the service image daemonless,
#                 build the CI stand-in base image from Debian packages, run the
#                 image as the chart would (netavark and iptables publish its port)
# Idempotent; installs only what is missing. Each entry is "command:package" (the
# command may be an absolute path, for packages that put nothing on PATH).
set -euo pipefail
wanted=(prometheus:prometheus promtool:prometheus wrk:wrk
        buildah:buildah podman:podman /usr/sbin/runc:runc /usr/sbin/debootstrap:debootstrap
        newuidmap:uidmap /usr/lib/podman/netavark:netavark /usr/sbin/iptables:iptables)
need=()
for entry in "${wanted[@]}"; do
  cmd=${entry%%:*} pkg=${entry#*:}
  if ! command -v "$cmd" >/dev/null 2>&1 && [[ " ${need[*]-} " != *" $pkg "* ]]; then
    need+=("$pkg")
  fi
done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: apt-get not found; install these yourself: ${need[*]}" >&2
  exit 1
fi
echo "install-system-deps: installing ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
