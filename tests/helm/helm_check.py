#!/usr/bin/env python3
"""Checks charts, packages and repository indexes with the real Helm library (libhelm_sdkpy.so
from PyPI helm-sdkpy, loaded with ctypes). Used by the Rust tests in tests/helm_library.rs.

    helm_check.py lint CHART            Helm's lint; exit 1 on an error-level message
    helm_check.py show CHART_OR_TGZ     load the chart with Helm's loader; print its metadata
    helm_check.py package CHART DIR     Helm's own `helm package`; print the path it wrote
    helm_check.py repo-add NAME URL     Helm downloads and loads URL/index.yaml
    helm_check.py sha256 URL            download URL, print the sha256 of its bytes

The library path comes from STAGECOACH_HELM_LIB. Helm reads HELM_* variables when the library
loads, so the caller sets them before starting this process.
"""
import ctypes
import hashlib
import json
import os
import sys
import urllib.request


def library():
    lib = ctypes.CDLL(os.environ["STAGECOACH_HELM_LIB"])
    lib.helm_sdkpy_last_error.restype = ctypes.c_char_p
    return lib


def config(lib):
    handle = ctypes.c_ulonglong()
    rc = lib.helm_sdkpy_config_create(b"default", b"", b"", b"{}", ctypes.byref(handle))
    if rc != 0:
        fail(lib, "config_create")
    return handle


def fail(lib, what):
    print(f"helm {what} failed: {lib.helm_sdkpy_last_error().decode()}", file=sys.stderr)
    sys.exit(1)


def call_json(lib, name, *args):
    out = ctypes.c_char_p()
    rc = getattr(lib, "helm_sdkpy_" + name)(*args, ctypes.byref(out))
    if rc != 0:
        fail(lib, name)
    return out.value.decode() if out.value else ""


def main(argv):
    command, *rest = argv
    if command == "sha256":
        with urllib.request.urlopen(rest[0], timeout=10) as response:
            print(hashlib.sha256(response.read()).hexdigest())
        return 0
    lib = library()
    handle = config(lib)
    if command == "lint":
        result = call_json(lib, "lint", handle, rest[0].encode())
        print(result)
        parsed = json.loads(result) if result else {}
        messages = parsed.get("messages") or parsed.get("Messages") or []
        errors = [m for m in messages if (m.get("severity") or m.get("Severity") or 0) >= 3]
        return 1 if errors or (parsed.get("Errors") or parsed.get("errors")) else 0
    if command == "show":
        print(call_json(lib, "show_chart", handle, rest[0].encode()))
        return 0
    if command == "package":
        chart, dest = rest
        print(call_json(lib, "package", handle, chart.encode(), dest.encode()))
        return 0
    if command == "repo-add":
        name, url = rest
        if lib.helm_sdkpy_repo_add(handle, name.encode(), url.encode(), b"", b"", b"{}") != 0:
            fail(lib, "repo_add")
        print(call_json(lib, "repo_list", handle))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
