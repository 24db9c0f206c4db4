#!/usr/bin/env bash
# deps.sh [--check]: install the Debian 12 packages that the build, the tests and the local
# services need, only those missing (apt-get update runs only then); a second run is a silent
# no-op. node/npm/psql already on PATH (e.g. NodeSource node) count as installed.
# --check only reports what is missing. Exit: 0 ok, 100 usage, 111 missing/apt failure.
set -euo pipefail

readonly PROG=deps.sh
readonly EX_USAGE=100 EX_TEMP=111

PACKAGES=(
  gcc make pkg-config libc6-dev
  libnng-dev libmsgpack-dev libpq-dev libhiredis-dev libcurl4-openssl-dev
  libh2o-evloop-dev libjwt-dev libjansson-dev libssl-dev
  # the S2 append sessions (gateway/s2s.h): HTTP/2 with a request body that stays open
  libnghttp2-dev
  postgresql postgresql-client redis-server redis-tools
  clickhouse-server clickhouse-client
  curl jq wrk nodejs npm procps iproute2 util-linux
  # make fuzz and the test suite's short fuzz run (tests/fuzz): clang and its libFuzzer runtime
  # (libclang_rt.fuzzer-x86_64.a)
  clang libclang-rt-14-dev
  # the metrics test checks /metrics with promtool (its package also ships the Prometheus
  # server, which nothing here starts)
  prometheus
  # make bench: nchan to measure Tether against (tests/bench/lib.sh runs its own nginx process;
  # on a host with systemd, Debian also enables nginx.service on :80, which the bench never uses)
  # and gnuplot for the plots in docs/bench/
  nginx-light libnginx-mod-nchan gnuplot-nox
  # the console's browser test (tests/compat/console.test.mjs): headless Chromium, driven by
  # playwright-core from npm
  chromium
  # tests/deploy/check_manifests.py reads the Kubernetes and compose files (PyYAML)
  python3-yaml
)

# A command on PATH that makes the package unnecessary. nodejs/npm: the Debian packages conflict
# with non-Debian installs (NodeSource's nodejs ships npm itself). postgresql-client is a
# metapackage; the versioned client that postgresql pulls in already provides psql.
declare -A SATISFIED_BY=([nodejs]=node [npm]=npm [postgresql-client]=psql)

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

usage() {
  printf 'usage: %s [--check]\n' "$PROG" >&2
  exit "$EX_USAGE"
}

check_only=0
case "${1-}" in
  "") ;;
  --check) check_only=1 ;;
  *) usage ;;
esac
[ "$#" -le 1 ] || usage

# One dpkg-query for all packages (a per-package loop costs ~10 ms each). It exits 1 when some
# package is unknown to dpkg but still prints the known ones.
declare -A installed=()
while read -r pkg status; do
  if [ "$status" = "install ok installed" ]; then installed[$pkg]=1; fi
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)

missing=()
for pkg in "${PACKAGES[@]}"; do
  [ -n "${installed[$pkg]-}" ] && continue
  if [ -n "${SATISFIED_BY[$pkg]-}" ] && command -v "${SATISFIED_BY[$pkg]}" >/dev/null 2>&1; then
    continue
  fi
  missing+=("$pkg")
done

[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$check_only" -eq 1 ]; then
  say "missing: ${missing[*]}"
  exit "$EX_TEMP"
fi
if [ "$(id -u)" -ne 0 ]; then
  say "missing: ${missing[*]}"
  say "run as root to install them: $0"
  exit "$EX_TEMP"
fi

say "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq; then
  say "apt-get update failed"
  exit "$EX_TEMP"
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  say "apt-get install failed"
  exit "$EX_TEMP"
fi
