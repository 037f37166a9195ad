#!/usr/bin/env bash
# Regenerate the committed betterproto2 code in netspectra/wire/generated/ from proto/v1/*.proto.
# Needs the test extras (grpcio-tools, betterproto2-compiler pinned to betterproto2's minor).
# tests/unit/test_generated_code.py fails when the committed code differs from a fresh run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The compiler formats its output with ruff, which reads the project's line length: run from the root.
cd "$here/.."
out=${1:-"$here/../netspectra/wire/generated"}
rm -rf "$out"
mkdir -p "$out"
python -m grpc_tools.protoc -I "$here" \
  --python_betterproto2_out="$out" \
  --python_betterproto2_opt=client_generation=async,server_generation=async,google_protobuf_descriptors \
  "$here"/v1/traffic.proto "$here"/v1/query.proto >/dev/null
