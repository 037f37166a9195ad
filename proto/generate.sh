#!/usr/bin/env bash
# Regenerate the committed betterproto2 code in netspectra/wire/generated/ from proto/v1/*.proto.
# Needs the test extras (grpcio-tools, betterproto2-compiler pinned to betterproto2's minor, ruff).
# tests/unit/spine/test_generated_code.py fails when the committed code differs from a fresh run.
#
# Runs with $PYTHON, else the project's .venv/bin/python, else python3 from PATH; never a bare
# `python`. protoc finds its plugin (protoc-gen-python_betterproto2) and the plugin finds ruff
# through PATH, so the interpreter's own bin/ goes first on PATH: that works without an
# activated virtualenv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
bindir=$("$PYTHON" -c 'import os, sys; print(os.path.dirname(sys.executable))')
export PATH="$bindir:$PATH"
# The compiler formats its output with ruff, which reads the project's line length: run from the root.
cd "$root"
out=${1:-"$root/netspectra/wire/generated"}
rm -rf "$out"
mkdir -p "$out"
"$PYTHON" -m grpc_tools.protoc -I "$here" \
  --python_betterproto2_out="$out" \
  --python_betterproto2_opt=client_generation=async,server_generation=async,google_protobuf_descriptors \
  "$here"/v1/traffic.proto "$here"/v1/query.proto "$here"/v1/flow.proto >/dev/null
