#!/usr/bin/env bash
# Long fuzzing runs of every parser of untrusted input (libFuzzer, AddressSanitizer), the
# targets in fuzz/fuzz_targets. Not part of CI (it needs a nightly compiler and minutes per
# target); the property tests in crates/vramfit-sources/tests run the same parsers in CI.
#
#   bash bench/fuzz.sh              # every target, 300 s each
#   bash bench/fuzz.sh 60 gguf_header safetensors_header
#
# Needs the nightly toolchain (rustup toolchain install nightly) and a C++ compiler (libFuzzer
# is built from source by the libfuzzer-sys crate). Builds with the same flags as cargo-fuzz,
# without needing it installed. Each target starts from the repository's fixtures as seeds;
# findings land in fuzz/artifacts/TARGET/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors_header safetensors_index gguf_header config_json)
rustup run nightly rustc --version >/dev/null 2>&1 || { echo "the nightly toolchain is needed: rustup toolchain install nightly" >&2; exit 1; }

host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address -Cdebug-assertions"
cargo +nightly build --release -q --target "$host" --bins

fixtures=../crates/vramfit-sources/tests/fixtures
seed() { # target, files...
    local dir=corpus/$1; shift
    mkdir -p "$dir"
    for f in "$@"; do cp -f "$f" "$dir/"; done
}
seed safetensors_header "$fixtures"/headers/*.safetensors
seed safetensors_index "$fixtures"/headers/*.index.json
seed gguf_header "$fixtures"/headers/*.gguf "$fixtures"/gguf-arch/*.gguf
seed config_json ../crates/vramfit-sources/data/models/*/*/config.json

status=0
for target in "${targets[@]}"; do
    mkdir -p "artifacts/$target"
    echo "== $target: ${seconds} s" >&2
    if ! "target/$host/release/$target" "corpus/$target" \
        -max_total_time="$seconds" -max_len=1048576 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="artifacts/$target/" -print_final_stats=1 2>"artifacts/$target.log"; then
        echo "!! $target found a failure: see fuzz/artifacts/$target/ and fuzz/artifacts/$target.log" >&2
        status=1
    fi
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|cov:" "artifacts/$target.log" | tail -4 >&2 || true
done
exit $status
