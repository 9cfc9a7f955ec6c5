#!/usr/bin/env bash
# Release-builds every Lambda function with cargo-lambda and fails when any
# bootstrap binary is missing. x86_64 always; arm64 too when its Rust target
# is installed (template.yaml deploys arm64; `sam build` cross-compiles).
# The `artifact` CLI is built in the same cargo-lambda run (same target and
# toolchain, so it shares the functions' compiled dependencies) and copied to
# target/cli/artifact-linux-<arch>. target/ is $CARGO_TARGET_DIR when set.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CARGO_TARGET_DIR:-target}

packages=$(ls functions)
targets=(x86-64)
rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu && targets+=(arm64)

for target in "${targets[@]}"; do
  start=$(date +%s)
  cargo lambda build --release --locked "--$target" --lambda-dir "$out/lambda-$target" \
    $(printf -- '--package %s ' $packages) --package cli
  echo "cargo lambda build --release --$target: $(( $(date +%s) - start ))s"
  missing=0
  for p in $packages; do
    binary="$out/lambda-$target/$p/bootstrap"
    if [[ -f $binary ]]; then
      printf '  %-22s %8s bytes\n' "$p" "$(stat -c%s "$binary")"
    else
      echo "  $p: MISSING $binary"; missing=1
    fi
  done
  cli="$out/lambda-$target/artifact/bootstrap" arch=${target/-/_}
  if [[ -f $cli ]]; then
    # The x86_64 build must run here (arm64 cannot, on this host).
    [[ $target != x86-64 ]] || "$cli" --version >/dev/null || { echo "  artifact: $cli does not run"; missing=1; }
    mkdir -p "$out/cli" && cp "$cli" "$out/cli/artifact-linux-$arch"
    printf '  %-22s %8s bytes  -> %s/cli/artifact-linux-%s\n' artifact "$(stat -c%s "$cli")" "$out" "$arch"
  else
    echo "  artifact: MISSING $cli"; missing=1
  fi
  [[ $missing == 0 ]] || { echo "release build incomplete"; exit 1; }
done
