#!/usr/bin/env bash
# `make stress`: concurrency and injected faults (the stress binary), then
# schemathesis's generated requests against openapi.yaml and a local server.
# Each part prints "N passed, N failed"; any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debug builds: 8 MiB thread stacks, as `cargo test` gives (.cargo/config.toml).
export RUST_MIN_STACK="${RUST_MIN_STACK:-8388608}"

cargo build --quiet -p stress -p local-api
status=0
"${CARGO_TARGET_DIR:-target}/debug/stress" || status=1

# A local server over its own emulator, on free loopback ports.
coproc EMULATOR { exec .venv/bin/python scripts/emulator.py --until-stdin-closes; }
read -r endpoint <&"${EMULATOR[0]}"
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  BUCKET_NAME=stress-schemathesis LISTEN_ADDR="127.0.0.1:$port" RUST_LOG=warn \
  "${CARGO_TARGET_DIR:-target}/debug/local-api" > /dev/null &
server=$!
trap 'kill $server 2>/dev/null; exec {EMULATOR[1]}>&-' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/artifacts" && break; sleep 0.1; done

# The coverage phase is left out: schemathesis 4.32 crashes inside it on this
# schema (a SystemError in its own AST code), not on our answers.
report=$(mktemp)
.venv/bin/schemathesis run openapi.yaml --url "http://127.0.0.1:$port" --checks all \
  --phases examples,fuzzing,stateful --max-examples "${SCHEMATHESIS_EXAMPLES:-350}" --workers 2 \
  --seed "${SCHEMATHESIS_SEED:-20261121}" > "$report" 2>&1 && st=0 || st=$?
sed -n '/SUMMARY/,$p' "$report"
generated=$(grep -oE '[0-9]+ generated' "$report" | tail -1 | cut -d' ' -f1)
failures=$(grep -oE 'found [0-9]+ unique failure' "$report" | tail -1 | grep -oE '[0-9]+' || echo 0)
server_errors=$(grep -c 'Server error' "$report" || true)
echo "schemathesis: $(( ${generated:-0} - ${failures:-0} )) passed, ${failures:-0} failed (${generated:-0} generated requests, $server_errors server errors)"
if [[ $st != 0 || ${generated:-0} -lt 5000 ]]; then
  [[ $st != 0 ]] && awk '/^- ST/{p=1} p{print} /st replay/{p=0}' "$report" | head -60
  [[ ${generated:-0} -lt 5000 ]] && echo "schemathesis generated fewer than 5000 requests"
  status=1
fi
rm -f "$report"
exit $status
