#!/usr/bin/env bash
# vramfit side by side with the tools users would otherwise run, in one run, as ratios of
# medians (competitor / vramfit): whole process against whole process (hyperfine -N), on
# the same inputs, made here. Absolute times move with the machine; the ratios are the point.
#
#   bash bench/compare.sh                       # from anywhere; installs what it compares with
#   bash bench/compare.sh --python /work/venv/bin/python   # reuse that interpreter's
#                                               # accelerate/transformers/torch (no torch download)
#   bash bench/run.sh --compare [ARGS]          # the same, after run.sh's own timings
# run.sh calls this script only when given --compare; otherwise the two are separate.
#
# Options: --bin PATH (vramfit binary; default target/release/vramfit, built if missing),
#          --python PY, --runs N (runs of each Python command; default 10),
#          --out DIR (inputs and hyperfine JSON; default a new mktemp dir; the GGUF there is a
#          26 GB sparse file, about 4 MB on disk). About 6 minutes on 2 cores, install aside.
#
# Competitors, pinned, installed from PyPI into bench/.venv (git-ignored):
#   accelerate estimate-memory (accelerate 1.15.0, transformers 5.24.0, torch 2.11.0: PyPI's
#     Linux torch wheel is the CUDA one and pulls the nvidia-* wheels, about 5 GB of venv;
#     there is no CPU wheel on PyPI, hence --python);
#   gguf 0.19.0 (llama.cpp's Python reader): its gguf-dump CLI, and a GGUFReader script;
#   safetensors 0.8.0: a safe_open listing; and a plain json.loads of the header;
#   hf-mem 0.5.6: installed and checked, not timed: it reads the Hugging Face Hub only.
# accelerate needs the Hub for a model's config; it gets vramfit's embedded config.json offline
# through a Hugging Face cache tree (HF_HUB_CACHE, HF_HUB_OFFLINE=1) and one replaced function:
# see accelerate_estimate() in bench/compare.py.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/vramfit
reuse_py=
runs=10
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin=$2; shift 2 ;;
        --python) reuse_py=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [ ! -x "$bin" ]; then cargo build --release -q; fi
bin=$(realpath "$bin")
command -v hyperfine >/dev/null || { echo "hyperfine is needed (apt-get install hyperfine)" >&2; exit 1; }
out=${out:-$(mktemp -d -t vramfit-compare.XXXXXX)}
mkdir -p "$out"
out=$(realpath "$out")

# --- the competitors, in bench/.venv -------------------------------------------------------
light=(gguf==0.19.0 safetensors==0.8.0 hf-mem==0.5.6)
heavy=(accelerate==1.15.0 transformers==5.24.0 torch==2.11.0)
venv=bench/.venv
pins=("${light[@]}")
[ -n "$reuse_py" ] || pins+=("${heavy[@]}")
if [ "$(cat $venv/.pins 2>/dev/null)" != "${pins[*]}" ]; then
    echo "== installing ${pins[*]} into $venv (PyPI)" >&2
    [ -x $venv/bin/python ] || python3 -m venv $venv
    $venv/bin/python -m pip install -q --disable-pip-version-check "${pins[@]}" >&2
    echo "${pins[*]}" >$venv/.pins
fi
venv=$PWD/$venv  # not realpath: that would leave the venv for its base interpreter
py=$venv/bin/python
acc_py=${reuse_py:-$py}
compare_py=$(realpath bench/compare.py)

# --- inputs ----------------------------------------------------------------------------------
model=meta-llama/Llama-3.1-8B
model70=meta-llama/Llama-3.1-70B
export HF_HUB_CACHE=$out/hf-cache HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
for m in $model $model70; do
    $py "$compare_py" make-hf-cache "$HF_HUB_CACHE" $m "crates/vramfit-sources/data/models/$m/config.json"
done
gguf_file=$out/vocab150k-700tensors.gguf
st_file=$out/100k-tensors.safetensors
for what in "make-gguf $gguf_file" "make-safetensors $st_file"; do
    $py "$compare_py" $what 2>"$out/make.log" || { cat "$out/make.log" >&2; exit 1; }
    grep -v '^INFO' "$out/make.log" >&2 || true
done

# Each must run and print its answer before it is timed.
echo "== accelerate estimate-memory, offline (once, untimed):"
$acc_py "$compare_py" accelerate-estimate $model 2>"$out/check.err" || { cat "$out/check.err" >&2; exit 1; }
for cmd in "$bin inspect $gguf_file --json" "$venv/bin/gguf-dump --json $gguf_file" \
           "$py $compare_py gguf-list $gguf_file" "$bin inspect $st_file --json" \
           "$py $compare_py safetensors-list $st_file" "$py $compare_py safetensors-header $st_file" \
           "$bin train $model --method full" \
           "$bin infer $model"; do
    $cmd >"$out/check.out" 2>"$out/check.err" || { echo "failed: $cmd" >&2; cat "$out/check.err" >&2; exit 1; }
done

# hf-mem: reads the Hub only (--model-id; URLs fixed to https://huggingface.co; no local path).
hfmem_src=$($py -c 'import hf_mem, os; print(os.path.dirname(hf_mem.__file__))')
hfmem_note="hf-mem $($py -c 'import importlib.metadata as m; print(m.version("hf-mem"))'): not timed: \
its CLI takes only --model-id (a Hub repo) and fetches https://huggingface.co/api/models/{id}/tree/{rev} \
and https://huggingface.co/{id}/resolve/{rev}/... by HTTP range requests; those URLs are fixed in \
$(cd "$hfmem_src" && grep -rl --include='*.py' 'https://huggingface.co/{' . | sed 's|^\./|hf_mem/|' | sort | tr '\n' ' ')\
(HF_ENDPOINT appears $({ grep -r --include="*.py" -c HF_ENDPOINT "$hfmem_src" || true; } | awk -F: "{s+=\$NF} END {print s}") times); it has no local-file mode"
hfmem_try=$(REQUEST_TIMEOUT=10 timeout 60 $venv/bin/hf-mem --model-id $model 2>&1 | tail -1 || true)

# --- whole processes -------------------------------------------------------------------------
# Each command is timed once (its JSON reused by every row naming it), vramfit's 100 runs after
# 10 warm-ups, the others $runs runs after 2.
declare -A timed=()
n=0
time_cmd() { # command, warmup, runs -> sets $json
    if [ -z "${timed[$1]:-}" ]; then
        n=$((n + 1))
        hyperfine -N --style none --warmup "$2" --runs "$3" --export-json "$out/t$n.json" "$1" >/dev/null
        timed[$1]=$out/t$n.json
        echo "   timed: $1" >&2
    fi
    json=${timed[$1]}
}
: >"$out/pairs.tsv"
pair() { # task, vramfit command, competitor label, competitor command
    time_cmd "$2" 10 100; local v=$json
    time_cmd "$4" 2 "$runs"; local c=$json
    printf '%s\t%s\t%s\t%s\n' "$1" "$v" "$3" "$c" >>"$out/pairs.tsv"
}
echo "== timing (hyperfine -N)" >&2
accelerate8="$acc_py $compare_py accelerate-estimate $model"
pair "8B: weights + full training" "$bin train $model --method full" "accelerate estimate-memory" "$accelerate8"
pair "8B: weights + inference" "$bin infer $model" "accelerate estimate-memory" "$accelerate8"
pair "70B: weights + full training" "$bin train $model70 --method full" \
    "accelerate estimate-memory" "$acc_py $compare_py accelerate-estimate $model70"
pair "GGUF header, 150k vocab, 700 tensors" "$bin inspect $gguf_file --json" \
    "gguf-dump --json" "$venv/bin/gguf-dump --json $gguf_file"
pair "GGUF header, 150k vocab, 700 tensors" "$bin inspect $gguf_file --json" \
    "GGUFReader script" "$py $compare_py gguf-list $gguf_file"
pair "safetensors header, 100k tensors" "$bin inspect $st_file --json" \
    "safe_open script" "$py $compare_py safetensors-list $st_file"
pair "safetensors header, 100k tensors" "$bin inspect $st_file --json" \
    "json.loads script" "$py $compare_py safetensors-header $st_file"
time_cmd "$acc_py -c 'import accelerate.commands.estimate'" 2 "$runs"
import_floor=$($py -c "import json, sys; print(round(json.load(open(sys.argv[1]))['results'][0]['median'], 2))" "$json")
echo "== parse only, in process" >&2
$py "$compare_py" in-process "$gguf_file" "$st_file" >"$out/in_process.json"

# --- the table -------------------------------------------------------------------------------
ver() { "$1" -c "import importlib.metadata as m; print(' '.join(p + ' ' + m.version(p) for p in '$2'.split()))"; }
echo
echo "vramfit compared, $(date -u +%Y-%m-%d), $(nproc) cores $(uname -m) ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1))"
pyver() { "$1" -c 'import platform; print(platform.python_version())'; }
echo "versions: $("$bin" --version) (release binary, $(stat -c %s "$bin") bytes), hyperfine $(hyperfine --version | cut -d' ' -f2)"
echo "  Python $(pyver "$acc_py"): $(ver "$acc_py" 'accelerate transformers torch huggingface_hub')"
echo "  Python $(pyver "$py"): $(ver "$py" 'gguf safetensors numpy hf-mem')"
echo "accelerate read vramfit's embedded config.json from an HF_HUB_CACHE tree (HF_HUB_OFFLINE=1, Hub"
echo "  model_info() replaced); vramfit took the model by name from its catalog (the same config.json);"
echo "  of its time, importing accelerate.commands.estimate alone takes $import_floor s (median)"
echo
$py "$compare_py" table "$out"
echo
echo "$hfmem_note."
echo "  run here: hf-mem --model-id $model -> ${hfmem_try:-no output}"
echo "raw hyperfine JSON and inputs: $out"
