"""Kubernetes JSON schemas for kubeconform, from the `kubernetes-validate` wheel (PyPI).

    python tools/k8s_schemas.py OUT_DIR [--version 1.33.0]

kubeconform normally downloads its schemas from GitHub, which CI cannot reach. The
`kubernetes-validate` package (a locked dev dependency) ships the same OpenAPI-derived
schemas per Kubernetes version, as `<kind>-<group>-<version>.json` files whose `$ref`s point
at `/api/_definitions.json` (resolved by that package's own loader; kubeconform cannot follow
them). This writes one version's strict schemas into OUT_DIR/v<version>-standalone-strict/,
each made standalone: the definitions it reaches are copied into its own `$defs` and its
references point there — the layout kubeconform's `-schema-location` template expects.
CRDs (ServiceMonitor, PrometheusRule) are not in it: tests/deploy/test_helm.py checks them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import kubernetes_validate

REF = re.compile(r'"\$ref": "(?:/api/_definitions\.json)?#/\$defs/([^"]+)"')


def standalone(text: str, definitions: dict[str, str]) -> str:
    """`text` with every definition it reaches (transitively) in its own `$defs`."""
    reached: set[str] = set()
    pending = set(REF.findall(text))
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending |= set(REF.findall(definitions[name])) - reached
    schema = json.loads(REF.sub(lambda m: f'"$ref": "#/$defs/{m.group(1)}"', text))
    schema["$defs"] = {
        name: json.loads(REF.sub(lambda m: f'"$ref": "#/$defs/{m.group(1)}"', definitions[name]))
        for name in sorted(reached)
    }
    return json.dumps(schema)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--version", default="1.33.0")
    args = parser.parse_args()
    source = (
        Path(os.path.dirname(kubernetes_validate.__file__))
        / "kubernetes-json-schema"
        / f"v{args.version}-local-strict"
    )
    if not source.is_dir():
        print(f"kubernetes-validate has no schemas for {args.version}", file=sys.stderr)
        return 1
    target = args.out / f"v{args.version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    definitions = {
        name: json.dumps(schema)
        for name, schema in json.loads((source / "_definitions.json").read_text())["$defs"].items()
    }
    count = 0
    for path in source.glob("*.json"):
        if path.name.startswith("_") or path.name == "all.json":
            continue
        (target / path.name).write_text(standalone(path.read_text(), definitions))
        count += 1
    print(f"{count} schemas for Kubernetes {args.version} in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
