"""Drives the real Helm engine (helm-python-sdk, Helm 4's Go SDK) for
tests/it/chart.rs: reads one JSON request on stdin, prints one JSON answer.

Request: {"op": "render" | "lint", "chart": PATH, "values": {...},
          "name": RELEASE, "namespace": NAMESPACE}
Answer:  render: {"ok": true, "manifests": {template: text}}
         lint:   {"ok": true, "report": {...}}
         any failure: {"ok": false, "error": "the engine's message"}
"""

import json
import sys

import helm_python as helm


def main() -> None:
    request = json.load(sys.stdin)
    try:
        if request["op"] == "render":
            with helm.Chart.load(request["chart"]) as chart:
                manifests = chart.render(
                    values=request.get("values") or {},
                    name=request.get("name", "container-image-pusher"),
                    namespace=request.get("namespace", "container-image-pusher"),
                    is_install=True,
                )
            answer = {"ok": True, "manifests": manifests}
        elif request["op"] == "lint":
            report = helm.lint(
                request["chart"],
                request.get("values") or {},
                strict=True,
                namespace=request.get("namespace", "container-image-pusher"),
            )
            answer = {"ok": True, "report": report}
        else:
            answer = {"ok": False, "error": f"unknown op {request['op']!r}"}
    except helm.HelmError as e:
        answer = {"ok": False, "error": str(e)}
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
