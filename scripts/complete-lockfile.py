#!/usr/bin/env python3
"""Adds lockfile entries for optional platform packages the build registry does not serve.

The npm registry reachable from our build machines serves only the linux builds of
@msgpackr-extract/* (an optional native speed-up of msgpackr, used by BullMQ). `npm install` there
then writes a lockfile without the darwin/win32 entries, and `npm ci` refuses it as out of sync.
The entries below carry no integrity (npm verifies what it fetches on those platforms) and are
skipped on linux. Run after any `npm install` that rewrites package-lock.json.
"""
import json
import pathlib

LOCK = pathlib.Path(__file__).resolve().parent.parent / "package-lock.json"
data = json.loads(LOCK.read_text())
packages = data["packages"]
for key, entry in list(packages.items()):
    for dep, version in (entry.get("optionalDependencies") or {}).items():
        if not dep.startswith("@msgpackr-extract/"):
            continue
        path = f"node_modules/{dep}"
        if path in packages:
            continue
        os_, cpu = dep.rsplit("msgpackr-extract-", 1)[1].split("-")
        packages[path] = {"version": version, "cpu": [cpu], "license": "MIT", "optional": True, "os": [os_]}
data["packages"] = dict(sorted(packages.items(), key=lambda kv: (kv[0] != "", kv[0])))
LOCK.write_text(json.dumps(data, indent=2) + "\n")
