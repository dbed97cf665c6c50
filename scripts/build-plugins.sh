#!/usr/bin/env bash
# Builds every WebAssembly placement plugin (plugins/ and plugins/fixtures/) as a component:
#   target/plugins/wasm32-wasip2/plugin/<crate>.wasm
# Idempotent; a no-op when nothing changed. Installs the wasm32-wasip2 target with rustup if it
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustc --print target-list >/dev/null 2>&1; then
  echo "[build-plugins] error: rustc is missing: install Rust (https://rustup.rs)" >&2; exit 1
fi
if ! rustc --print sysroot | xargs -I{} test -d "{}/lib/rustlib/wasm32-wasip2"; then
  if command -v rustup >/dev/null; then
    rustup target add wasm32-wasip2 >&2
  else
    echo "[build-plugins] error: the wasm32-wasip2 target is missing and rustup is not available" >&2; exit 1
  fi
fi
packages=()
for manifest in plugins/*/Cargo.toml plugins/fixtures/*/Cargo.toml; do
  name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n1)
  packages+=(-p "$name")
done
exec cargo build --quiet --profile plugin --target wasm32-wasip2 --target-dir target/plugins "${packages[@]}"
