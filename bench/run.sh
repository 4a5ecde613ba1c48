#!/usr/bin/env bash
# Whole-process timings of the vramfit binary (hyperfine), then the library
# benchmarks (cargo bench). Not part of CI: machines are noisy, and the figures
# go into the issue notes and the README with their date and machine.
#
#   bash bench/run.sh            # from the repository root
#   bash bench/run.sh --compare [ARGS]   # then bench/compare.sh ARGS: ratios against
#                                        # accelerate, gguf, safetensors (installs them)
set -euo pipefail
cd "$(dirname "$0")/.."
compare=0
if [ "${1:-}" = --compare ]; then compare=1; shift; fi

if ! command -v hyperfine >/dev/null; then
    echo "installing hyperfine (Debian package)" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q hyperfine >/dev/null; else sudo apt-get install -y -q hyperfine >/dev/null; fi
fi
cargo build --release -q
bin=target/release/vramfit
fixtures=crates/vramfit-sources/tests/fixtures/headers

echo "== machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
ls -l "$bin" | awk '{print "== release binary: " $5 " bytes"}'
hyperfine -N --warmup 20 --runs 200 \
    "$bin train llama-3.1-8b --method lora --grad-ckpt --gpu rtx-4090" \
    "$bin infer llama-3.1-70b --dtype nf4 --gpu a100-80gb --json" \
    "$bin fit llama-3.1-8b --method lora --grad-ckpt" \
    "$bin inspect $fixtures/tiny-llama.gguf --json" \
    "$bin --version"

cargo bench -q -p vramfit-sources

if [ "$compare" = 1 ]; then bash bench/compare.sh --bin "$bin" "$@"; fi
