#!/usr/bin/env python3
"""`helm template` and `helm upgrade --install` for the tests, rendered by the real Helm engine
(PyPI helm-python-sdk), so that a test sees the manifests that would be applied. No cluster is
contacted: an install writes what it would apply to $FAKE_STATE/deployed-RELEASE.yaml and the
sha256 of the chart it was given to $FAKE_STATE/deployed-RELEASE.chart.

    render.py template RELEASE CHART [--namespace NS] [--set-string K=V]... [--set-json K=JSON]...
    render.py upgrade --install RELEASE CHART [--wait] [--timeout T] --kubeconfig FILE
              [--kube-context NAME] [--set-string K=V]...

Values are validated against the chart's values.schema.json, as Helm does.
"""
import hashlib
import os
import sys

import helm_python


def merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def parse(args):
    positional, options, sets = [], {}, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--set-string", "--set-json"):
            sets.append((arg, args[i + 1]))
            i += 2
        elif arg in ("--timeout", "--kubeconfig", "--kube-context", "--namespace"):
            options[arg] = args[i + 1]
            i += 2
        elif arg.startswith("--"):
            options[arg] = True
            i += 1
        else:
            positional.append(arg)
            i += 1
    return positional, options, sets


def render(release, chart, sets, namespace="default"):
    values = {}
    for kind, expression in sets:
        if kind == "--set-json":
            merge(values, helm_python.parse_set_json(expression))
        else:
            merge(values, helm_python.parse_set_string_values(expression))
    manifests = helm_python.Chart.load(chart).render(
        values, name=release, namespace=namespace, is_install=True
    )
    out = []
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        out.append(f"---\n# Source: {path}\n{text.rstrip()}\n")
    return "".join(out)


def main(argv):
    command = argv[0]
    if command == "template":
        (release, chart), options, sets = parse(argv[1:])
        sys.stdout.write(render(release, chart, sets, options.get("--namespace", "default")))
        return 0
    if command == "upgrade":
        positional, options, sets = parse(argv[1:])
        release, chart = positional
        kubeconfig = options.get("--kubeconfig")
        if not kubeconfig or not os.path.isfile(kubeconfig):
            print(f"Error: kubeconfig {kubeconfig!r} does not exist", file=sys.stderr)
            return 1
        rendered = render(release, chart, sets)
        state = os.environ.get("FAKE_STATE") or os.path.dirname(os.environ["FAKE_LOG"])
        with open(os.path.join(state, f"deployed-{release}.yaml"), "w") as f:
            f.write(rendered)
        with open(chart, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest() if os.path.isfile(chart) else "a directory"
        with open(os.path.join(state, f"deployed-{release}.chart"), "w") as f:
            f.write(digest + "\n")
        print(f'Release "{release}" has been upgraded. Happy Helming!')
        return 0
    print(f"render.py: {command} is not implemented", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except helm_python.HelmError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(1)
