#!/usr/bin/env bash
# Compiles every .proto file with grpcio-tools' protoc (PyPI) into a scratch
# directory: the contract must not depend on Rust-only extensions.
# Usage: PYTHON=/path/to/python-with-grpcio-tools scripts/check-proto-python.sh
set -euo pipefail
cd "$(dirname "$0")/../proto"
python=${PYTHON:-python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mapfile -t files < <(find fedsec -name '*.proto' | sort)
"$python" -m grpc_tools.protoc -I . --python_out="$out" --grpc_python_out="$out" "${files[@]}"
echo "grpcio-tools compiled ${#files[@]} .proto files: ${files[*]}"
