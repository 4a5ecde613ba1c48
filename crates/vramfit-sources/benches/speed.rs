//! How fast vramfit answers: `cargo bench -p vramfit-sources`.
//!
//! Every input is made here (catalog models, generated headers, sparse shard
//! files): nothing is downloaded. Whole-process timings and the comparison with
//! other tools live in `bench/run.sh`.

use std::fmt::Write as _;

use divan::{Bencher, black_box};
use vramfit_core::memory::estimate;
use vramfit_core::memory::runtime::Runtime;
use vramfit_core::solve::{Cluster, fewest_gpus, largest_batch, longest_sequence};
use vramfit_core::workload::{
    AttentionImpl, Method, Optimizer, OptimizerImpl, Precision, Training, Workload,
};
use vramfit_sources::{checkpoint, gguf, gpus, resolve_model, safetensors};

fn main() {
    divan::main();
}

fn training(method: Method) -> Training {
    Training::default().with(|t| {
        t.method = method;
        t.precision = Precision::Bf16Mixed;
        t.optimizer = Optimizer::Adamw;
        t.optimizer_impl = OptimizerImpl::Foreach;
        t.seq_len = 2048;
        t.grad_checkpointing = method != Method::Full;
        t.attention = AttentionImpl::Sdpa;
        t.lora = (method != Method::Full).then(|| {
            vramfit_core::lora::LoraConfig::new(16, vramfit_core::lora::LoraTargets::AllLinear)
        });
    })
}

/// One estimate of a catalog model, the config already parsed (the library call).
#[divan::bench(args = ["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "deepseek-v3"])]
fn estimate_full_training(bencher: Bencher, model: &str) {
    let spec = resolve_model(model).unwrap().parsed.spec;
    let workload = Workload::Training(training(Method::Full));
    bencher.bench(|| estimate(black_box(&spec), black_box(&workload), &Runtime::HOPPER).unwrap());
}

/// Resolving a catalog name and parsing its embedded config.
#[divan::bench]
fn resolve_catalog_model() -> String {
    resolve_model(black_box("llama-3.1-8b")).unwrap().parsed.spec.model_type
}

/// `vramfit fit` across the GPU catalog: fewest GPUs, then largest batch and
/// longest sequence on the plan, for every GPU.
#[divan::bench(args = ["llama-3.1-8b", "llama-3.1-70b"])]
fn fit_sweep_lora(bencher: Bencher, model: &str) {
    let spec = resolve_model(model).unwrap().parsed.spec;
    let job = training(Method::Lora);
    bencher.bench(|| {
        let mut answers = 0u64;
        for gpu in gpus::gpus() {
            let runtime = gpu.runtime();
            let capacity = gpu.memory_bytes();
            let cluster = Cluster { capacity, max_gpus: 64, gpus_per_node: 8 };
            if let Some(plan) = fewest_gpus(&spec, &job, &runtime, &cluster).unwrap() {
                let on_plan = Workload::Training(job.clone().with(|t| t.layout = plan.layout));
                answers +=
                    largest_batch(&spec, &on_plan, &runtime, capacity).unwrap().map_or(0, |a| a.0);
                answers += longest_sequence(&spec, &on_plan, &runtime, capacity)
                    .unwrap()
                    .map_or(0, |a| a.0);
            }
        }
        answers
    });
}

/// A safetensors header of `n` tensors (Llama-like names), as bytes.
fn safetensors_header(tensors: usize) -> Vec<u8> {
    let mut json = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut offset = 0u64;
    for i in 0..tensors {
        let bytes = 4096 * 4096 * 2;
        write!(
            json,
            ",\"model.layers.{}.mlp.proj_{}.weight\":{{\"dtype\":\"BF16\",\"shape\":[4096,4096],\"data_offsets\":[{offset},{}]}}",
            i / 8,
            i % 8,
            offset + bytes
        ).unwrap();
        offset += bytes;
    }
    json.push('}');
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(json.as_bytes());
    file
}

/// A 100,000-tensor safetensors header (about 13 MB), parsed from memory.
#[divan::bench]
fn safetensors_100k_tensor_header(bencher: Bencher) {
    let bytes = safetensors_header(100_000);
    bencher
        .counter(divan::counter::BytesCount::new(bytes.len()))
        .bench(|| safetensors::parse_bytes(black_box(&bytes), "bench").unwrap().tensors.len());
}

/// A 30-shard checkpoint (sparse files: only headers exist) read from disk.
#[divan::bench(sample_count = 30)]
fn safetensors_30_shards(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let mut map = serde_json::Map::new();
    for shard in 1..=30 {
        let name = format!("model-{shard:05}-of-00030.safetensors");
        let header = safetensors_header(300);
        let data: u64 = 300 * 4096 * 4096 * 2;
        let path = dir.path().join(&name);
        std::fs::write(&path, &header).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(header.len() as u64 + data)
            .unwrap();
        map.insert(format!("t{shard}"), serde_json::Value::String(name));
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    bencher.bench(|| checkpoint::read_checkpoint(black_box(dir.path())).unwrap().stored_bytes);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// A GGUF header with a `vocab`-token vocabulary and `tensors` `Q4_K` tensors.
fn gguf_header(vocab: usize, tensors: usize) -> (Vec<u8>, u64) {
    let mut kv = Vec::new();
    let mut n_kv = 0u64;
    let mut key = |kv: &mut Vec<u8>, name: &str, type_id: u32| {
        put_str(kv, name);
        kv.extend_from_slice(&type_id.to_le_bytes());
        n_kv += 1;
    };
    key(&mut kv, "general.architecture", 8);
    put_str(&mut kv, "llama");
    key(&mut kv, "llama.block_count", 4);
    kv.extend_from_slice(&80u32.to_le_bytes());
    // tokenizer.ggml.tokens: an array of strings; scores: f32.
    key(&mut kv, "tokenizer.ggml.tokens", 9);
    kv.extend_from_slice(&8u32.to_le_bytes());
    kv.extend_from_slice(&(vocab as u64).to_le_bytes());
    for t in 0..vocab {
        put_str(&mut kv, &format!("tok{t}"));
    }
    key(&mut kv, "tokenizer.ggml.scores", 9);
    kv.extend_from_slice(&6u32.to_le_bytes());
    kv.extend_from_slice(&(vocab as u64).to_le_bytes());
    kv.extend(std::iter::repeat_n(0u8, vocab * 4));
    let mut ti = Vec::new();
    let tensor_bytes = 8192u64 / 256 * 144 * 8192;
    for i in 0..tensors {
        put_str(&mut ti, &format!("blk.{}.ffn_{}.weight", i / 8, i % 8));
        ti.extend_from_slice(&2u32.to_le_bytes());
        ti.extend_from_slice(&8192u64.to_le_bytes());
        ti.extend_from_slice(&8192u64.to_le_bytes());
        ti.extend_from_slice(&12u32.to_le_bytes()); // Q4_K
        ti.extend_from_slice(&(i as u64 * tensor_bytes).to_le_bytes());
    }
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(tensors as u64).to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b.extend_from_slice(&kv);
    b.extend_from_slice(&ti);
    let file_len = (b.len() as u64).next_multiple_of(32) + tensors as u64 * tensor_bytes;
    (b, file_len)
}

/// A GGUF header with a 150,000-token vocabulary and 700 tensors, from memory.
#[divan::bench]
fn gguf_150k_vocab_700_tensors(bencher: Bencher) {
    let (bytes, file_len) = gguf_header(150_000, 700);
    bencher
        .counter(divan::counter::BytesCount::new(bytes.len()))
        .bench(|| gguf::parse_prefix(black_box(&bytes), "bench", file_len).unwrap().known_bytes);
}
