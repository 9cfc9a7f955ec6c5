#!/usr/bin/env bash
# `make dev`: the local emulator on a free loopback port, then local-api on
# LISTEN_ADDR (default 127.0.0.1:3000) against it. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debug builds: 8 MiB thread stacks, as `cargo test` gives (.cargo/config.toml).
export RUST_MIN_STACK="${RUST_MIN_STACK:-8388608}"

cargo build --quiet -p local-api

# The emulator lives as long as this script: it stops when its stdin closes.
coproc EMULATOR { exec .venv/bin/python scripts/emulator.py --until-stdin-closes; }
read -r endpoint <&"${EMULATOR[0]}"
trap 'exec {EMULATOR[1]}>&-; wait' EXIT

export AWS_ENDPOINT_URL="$endpoint"
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1
export BUCKET_NAME="${BUCKET_NAME:-versioned-artifacts-dev}"
# The emulator's account: targets naming `tag:KEY=VALUE` look its roles up.
export ACCOUNT_ID="${ACCOUNT_ID:-123456789012}"
export LISTEN_ADDR="${LISTEN_ADDR:-127.0.0.1:3000}"
url="http://$LISTEN_ADDR"

cat <<MSG
emulator (S3, DynamoDB, CloudWatch, EventBridge): $endpoint
API:                      $url

Try (with the CLI: cargo install --locked --path cli):
  export ARTIFACT_API_URL=$url
  printf 'hello' > /tmp/hello.txt
  artifact push hello /tmp/hello.txt --publish --alias staging
  artifact pull hello:staging -o /tmp/hello.out
or the HTTP API itself:
  curl -s $url/artifacts
(the README walks through the whole pipeline flow)

MSG
"${CARGO_TARGET_DIR:-target}/debug/local-api"
