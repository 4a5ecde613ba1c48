"""Helper of bench/compare.sh: makes the inputs, runs the Python side, prints the table.

    python bench/compare.py make-gguf FILE         # GGUFWriter: 150,000-token vocab, 700 Q4_K tensors
    python bench/compare.py make-safetensors FILE  # 100,000-tensor header, sparse data
    python bench/compare.py make-hf-cache DIR ORG/NAME CONFIG.json
    python bench/compare.py accelerate-estimate MODEL [ARGS...]  # `accelerate estimate-memory`, offline
    python bench/compare.py gguf-list FILE         # GGUFReader: tensors and metadata, as JSON
    python bench/compare.py safetensors-list FILE  # safetensors.safe_open: tensors, as JSON
    python bench/compare.py safetensors-header FILE  # json.loads of the header, sums by dtype
    python bench/compare.py in-process GGUF SAFETENSORS   # parse-only timings (timeit)
    python bench/compare.py table OUT_DIR          # the ratio table from hyperfine's JSON

Imports are local to each command so that a timed command pays only for what it uses.
"""

import json
import os
import sys

VOCAB = 150_000
GGUF_TENSORS = 700
ST_TENSORS = 100_000
ALIGN = 32


def make_gguf(path):
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter

    # The shape of the header `cargo bench -p vramfit-sources` parses (gguf_150k_vocab_700_tensors),
    # plus a token_type array: llama, 80 blocks, 700 Q4_K 8192x8192 tensors.
    w = GGUFWriter(path, "llama")
    w.add_block_count(80)
    w.add_token_list([f"tok{t}" for t in range(VOCAB)])
    w.add_token_scores([0.0] * VOCAB)
    w.add_token_types([1] * VOCAB)
    q4k_bytes = 8192 // 256 * 144 * 8192
    for i in range(GGUF_TENSORS):
        w.add_tensor_info(f"blk.{i // 8}.ffn_{i % 8}.weight", [8192, 8192], np.dtype(np.float32),
                          q4k_bytes, raw_dtype=GGMLQuantizationType.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    f = w.fout[0]
    header = f.tell()
    data_start = -(-header // ALIGN) * ALIGN
    size = data_start + GGUF_TENSORS * (-(-q4k_bytes // ALIGN) * ALIGN)
    f.truncate(size)  # sparse: the tensor data is holes, only the header is on disk
    w.close()
    print(f"{path}: header {header} bytes, file {size} bytes (sparse)", file=sys.stderr)


def make_safetensors(path):
    # The header `cargo bench -p vramfit-sources` parses (safetensors_100k_tensor_header),
    # but with 64x64 BF16 tensors so that the (sparse) file stays under 1 GB.
    parts = ['{"__metadata__":{"format":"pt"}']
    offset = 0
    nbytes = 64 * 64 * 2
    for i in range(ST_TENSORS):
        parts.append(f',"model.layers.{i // 8}.mlp.proj_{i % 8}.weight":{{"dtype":"BF16",'
                     f'"shape":[64,64],"data_offsets":[{offset},{offset + nbytes}]}}')
        offset += nbytes
    parts.append("}")
    header = "".join(parts).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        f.truncate(8 + len(header) + offset)
    print(f"{path}: header {8 + len(header)} bytes, file {8 + len(header) + offset} bytes (sparse)",
          file=sys.stderr)


def make_hf_cache(cache, repo, config):
    """A Hugging Face hub cache holding one file, config.json, of one repo at `main`."""
    import shutil

    rev = "0" * 40
    root = os.path.join(cache, "models--" + repo.replace("/", "--"))
    os.makedirs(os.path.join(root, "snapshots", rev), exist_ok=True)
    os.makedirs(os.path.join(root, "refs"), exist_ok=True)
    shutil.copyfile(config, os.path.join(root, "snapshots", rev, "config.json"))
    with open(os.path.join(root, "refs", "main"), "w") as f:
        f.write(rev)


def accelerate_estimate(args):
    """`accelerate estimate-memory ARGS`, with the one Hub call that has no offline path replaced.

    accelerate's create_empty_model() first calls huggingface_hub.model_info() (the Hub API:
    library name and config) through verify_on_hub(); with HF_HUB_OFFLINE=1 that call fails and
    accelerate reports the repo as gated. Here verify_on_hub() returns the same two facts read
    from the local cache's config.json; everything after it (AutoConfig.from_pretrained from
    HF_HUB_CACHE, the model built on the meta device, the sizes, the table) is accelerate's own.
    """
    from types import SimpleNamespace

    import accelerate.commands.estimate as estimate
    from huggingface_hub import hf_hub_download

    def verify_offline(repo, token=None):
        with open(hf_hub_download(repo, "config.json")) as f:
            return SimpleNamespace(library_name="transformers", config=json.load(f))

    estimate.verify_on_hub = verify_offline
    from accelerate.commands.accelerate_cli import main

    sys.argv = ["accelerate", "estimate-memory", *args]
    main()


def gguf_summary(reader):
    """What `vramfit inspect --json` reports: metadata (arrays by length), tensors, total bytes."""
    from gguf import GGUFValueType

    meta = {}
    for field in reader.fields.values():
        if field.types and field.types[0] == GGUFValueType.ARRAY:
            meta[field.name] = {"array": field.types[-1].name, "len": len(field.data)}
        else:
            meta[field.name] = field.contents()
    tensors = [{"name": t.name, "type": t.tensor_type.name, "shape": t.shape.tolist(),
                "bytes": int(t.n_bytes)} for t in reader.tensors]
    return {"metadata": meta, "tensors": tensors, "bytes": sum(t["bytes"] for t in tensors)}


def gguf_list(path):
    from gguf import GGUFReader

    json.dump(gguf_summary(GGUFReader(path, "r")), sys.stdout)


def safetensors_summary(f):
    tensors = []
    for name in f.keys():
        s = f.get_slice(name)
        tensors.append({"name": name, "dtype": s.get_dtype(), "shape": s.get_shape()})
    return {"metadata": f.metadata(), "tensors": tensors}


def safetensors_list(path):
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        json.dump(safetensors_summary(f), sys.stdout)


def safetensors_header(path):
    """The least Python can do: read the header, json.loads it, sum by dtype (vramfit's by_type)."""
    import math

    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
             "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    by_type = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        row = by_type.setdefault(t["dtype"], {"tensors": 0, "elements": 0, "bytes": 0})
        n = math.prod(t["shape"])
        row["tensors"] += 1
        row["elements"] += n
        row["bytes"] += n * sizes[t["dtype"]]
    json.dump({"metadata": header.get("__metadata__", {}), "by_type": by_type}, sys.stdout)


def gguf_header_len(path):
    from gguf import GGUFReader

    r = GGUFReader(path, "r")
    # data_offset is aligned; the header proper ends at the last tensor-info field.
    last = max(t.field.offset + sum(int(p.nbytes) for p in t.field.parts) for t in r.tensors)
    return last


def in_process(gguf_path, st_path):
    """Parse-only timings, in this process, of the same headers vramfit's library bench parses."""
    import timeit

    from gguf import GGUFReader

    out = {}

    def best(fn, number):
        # median of 5 repeats, per call
        times = sorted(t / number for t in timeit.repeat(fn, number=number, repeat=5))
        return times[len(times) // 2]

    gguf_header = gguf_header_len(gguf_path)
    t = best(lambda: GGUFReader(gguf_path, "r"), 1)  # the parse happens in the constructor
    out["gguf.GGUFReader(file)"] = {"s": t, "header_bytes": gguf_header}
    try:
        from hf_mem.gguf.metadata import parse_gguf_metadata

        with open(gguf_path, "rb") as f:
            raw = f.read(gguf_header)
        t = best(lambda: parse_gguf_metadata(raw), 3)
        out["hf_mem.gguf.metadata.parse_gguf_metadata(bytes) [internal; CLI is Hub-only]"] = {
            "s": t, "header_bytes": gguf_header}
    except ImportError as e:
        print(f"hf-mem parser not timed: {e}", file=sys.stderr)
    from safetensors import safe_open

    with open(st_path, "rb") as f:
        st_header = 8 + int.from_bytes(f.read(8), "little")

    def st():
        with safe_open(st_path, framework="numpy") as f:
            return safetensors_summary(f)

    t = best(st, 1)
    out["safetensors.safe_open(file) + listing"] = {"s": t, "header_bytes": st_header}
    json.dump(out, sys.stdout)


def fmt_time(s):
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def fmt_ratio(r):
    return f"{r:,.0f}x" if r >= 10 else f"{r:.1f}x"


def table(out_dir):
    """Rows from OUT_DIR/pairs.tsv: task, vramfit json, competitor label, competitor json."""
    rows = []
    with open(os.path.join(out_dir, "pairs.tsv")) as f:
        for line in f:
            task, vjson, label, cjson = line.rstrip("\n").split("\t")
            v = json.load(open(vjson))["results"][0]
            c = json.load(open(cjson))["results"][0]
            rows.append((task, label, v["median"], c["median"], len(v["times"]), len(c["times"])))
    head = ("task", "competitor", "vramfit median", "competitor median", "ratio (competitor/vramfit)")
    cells = [head] + [
        (task, label, f"{fmt_time(v)} (n={nv})", f"{fmt_time(c)} (n={nc})", fmt_ratio(c / v))
        for task, label, v, c, nv, nc in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for i, r in enumerate(cells):
        print("  ".join(x.ljust(w) if j < 2 else x.rjust(w) for j, (x, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))

    path = os.path.join(out_dir, "in_process.json")
    if os.path.exists(path):
        print()
        print("Parse only, in process, median of 5:")
        for name, r in json.load(open(path)).items():
            mbs = r["header_bytes"] / r["s"] / 1e6
            print(f"  {name}: {fmt_time(r['s'])} for a {r['header_bytes']:,}-byte header = {mbs:,.1f} MB/s")
        print("  vramfit's library, for comparison (`cargo bench -p vramfit-sources`, quoted from the README,")
        print("  not run here): the same GGUF header less its token_type array 665 MB/s; the same")
        print("  100,000-tensor safetensors header with 4096x4096 shapes 200-290 MB/s")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make-gguf":
        make_gguf(args[0])
    elif cmd == "make-safetensors":
        make_safetensors(args[0])
    elif cmd == "make-hf-cache":
        make_hf_cache(*args)
    elif cmd == "accelerate-estimate":
        accelerate_estimate(args)
    elif cmd == "gguf-list":
        gguf_list(args[0])
    elif cmd == "safetensors-list":
        safetensors_list(args[0])
    elif cmd == "safetensors-header":
        safetensors_header(args[0])
    elif cmd == "in-process":
        in_process(*args)
    elif cmd == "table":
        table(args[0])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
