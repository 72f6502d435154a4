#!/usr/bin/env bash
# Validates compose files offline, as Docker Compose reads them: `docker-compose -f FILE config -q`
# (schema, types, references between services, volumes and networks; no Docker engine needed).
# The tool is Debian's `docker-compose` package (Compose v1.29, Python), installed with apt when
# missing (as root or through sudo; its recommended docker.io engine is left out). Compose v2 is
# not installable here: it ships as a Docker CLI plugin outside the package registries. v1 reads
# the Compose specification (files without `version:`) but not its top-level `name:`, so the
# project's compose files leave that key out.
#
# Usage: scripts/compose.sh FILE...        exit 1 naming the first invalid file
#        scripts/compose.sh --install      install only
set -euo pipefail
if ! command -v docker-compose >/dev/null; then
  echo "compose: installing Debian's docker-compose" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
[ "${1:-}" = --install ] && exit 0
[ $# -gt 0 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }
for file in "$@"; do
  # Interpolated variables take their defaults (${VAR:-default}); unset ones would only warn.
  docker-compose --project-directory "$(dirname "$file")" -f "$file" config -q \
    || { echo "compose: $file is invalid" >&2; exit 1; }
done
