//! GGUF header parsing: fixtures written by the `gguf` Python package, hostile inputs, a tiny
//! writer for hand-made headers, and property tests (never a panic, round trips).

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;
use vramfit_sources::gguf::{
    self, GGML_TYPES, GgmlType, GgufError, GgufLimits, GgufValue, GgufValueType, SplitName,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/headers")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A tiny GGUF writer (little-endian, any version number) for hand-made headers.
#[derive(Default, Clone)]
struct Writer {
    version: u32,
    kv: Vec<u8>,
    n_kv: u64,
    ti: Vec<u8>,
    n_tensors: u64,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

impl Writer {
    fn new() -> Self {
        Self { version: 3, ..Self::default() }
    }
    /// A key with a raw type id and raw value bytes.
    fn raw(mut self, key: &str, type_id: u32, value: &[u8]) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend_from_slice(&type_id.to_le_bytes());
        self.kv.extend_from_slice(value);
        self.n_kv += 1;
        self
    }
    fn u32(self, key: &str, v: u32) -> Self {
        self.raw(key, 4, &v.to_le_bytes())
    }
    fn string(self, key: &str, v: &str) -> Self {
        let mut b = Vec::new();
        put_str(&mut b, v);
        self.raw(key, 8, &b)
    }
    fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> Self {
        put_str(&mut self.ti, name);
        self.ti.extend_from_slice(&u32::try_from(dims.len()).unwrap().to_le_bytes());
        for d in dims {
            self.ti.extend_from_slice(&d.to_le_bytes());
        }
        self.ti.extend_from_slice(&ggml_type.to_le_bytes());
        self.ti.extend_from_slice(&offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }
    fn header(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.n_tensors.to_le_bytes());
        b.extend_from_slice(&self.n_kv.to_le_bytes());
        b.extend_from_slice(&self.kv);
        b.extend_from_slice(&self.ti);
        b
    }
    /// The header, padding to `alignment`, and `data_len` zero bytes.
    fn file(&self, alignment: usize, data_len: usize) -> Vec<u8> {
        let mut b = self.header();
        b.resize(b.len().next_multiple_of(alignment) + data_len, 0);
        b
    }
}

fn parse_file(bytes: &[u8]) -> Result<gguf::GgufHeader, GgufError> {
    gguf::read_header(bytes, "t.gguf", Some(bytes.len() as u64))
}

fn err(bytes: &[u8]) -> String {
    parse_file(bytes).unwrap_err().to_string()
}

fn check_against_reader(header: &gguf::GgufHeader, exp: &Value) {
    assert_eq!(u64::from(header.version), exp["version"].as_u64().unwrap());
    assert_eq!(header.data_offset, exp["data_offset"].as_u64().unwrap());
    assert_eq!(header.alignment, exp["alignment"].as_u64().unwrap());
    let tensors = exp["tensors"].as_array().unwrap();
    assert_eq!(header.tensors.len(), tensors.len());
    for (ours, t) in header.tensors.iter().zip(tensors) {
        assert_eq!(ours.name, t["name"].as_str().unwrap());
        let dims: Vec<u64> = serde_json::from_value(t["dims"].clone()).unwrap();
        assert_eq!(ours.dims, dims, "{}", ours.name);
        assert_eq!(u64::from(ours.ggml_type.id()), t["type"].as_u64().unwrap());
        assert_eq!(ours.ggml_type.name(), t["type_name"].as_str().unwrap());
        assert_eq!(ours.elements, t["n_elements"].as_u64().unwrap());
        assert_eq!(ours.byte_len, t["n_bytes"].as_u64(), "{}", ours.name);
        assert_eq!(ours.offset, t["offset"].as_u64().unwrap(), "{}", ours.name);
    }
    let known: u64 = tensors.iter().map(|t| t["n_bytes"].as_u64().unwrap()).sum();
    assert_eq!(header.known_bytes, known);
    assert_eq!(header.unknown_type_tensors, 0);
    let fields = exp["fields"].as_object().unwrap();
    assert_eq!(header.metadata.len(), fields.len());
    for (key, f) in fields {
        let v = header.get(key).unwrap_or_else(|| panic!("no key {key}"));
        if f["type"] == "array" {
            let a = v.as_array().unwrap();
            assert_eq!(u64::from(a.element_type.id()), f["element_type"].as_u64().unwrap());
            assert_eq!(a.len, f["len"].as_u64().unwrap(), "{key}");
        } else {
            assert_eq!(u64::from(v.value_type().id()), f["type"].as_u64().unwrap(), "{key}");
            match &f["value"] {
                Value::String(s) => assert_eq!(v.as_str(), Some(s.as_str())),
                Value::Bool(b) => assert_eq!(v, &GgufValue::Bool(*b)),
                n => assert_eq!(v.as_f64(), n.as_f64(), "{key}"),
            }
        }
    }
}

#[test]
fn tiny_fixture_agrees_with_the_gguf_reader() {
    let exp = &expected()["gguf"]["tiny-llama.gguf"];
    let header = gguf::read_path(&fixtures().join("tiny-llama.gguf")).unwrap();
    check_against_reader(&header, exp);
    assert_eq!(header.alignment, 64);
    assert_eq!(header.architecture(), Some("llama"));
    assert_eq!(header.block_count(), Some(1));
    assert_eq!(header.embedding_length(), Some(256));
    assert_eq!(header.feed_forward_length(), Some(32));
    assert_eq!(header.head_count(), Some(8));
    assert_eq!(header.head_count_kv(), Some(1));
    assert_eq!(header.context_length(), Some(4096));
    assert_eq!(header.key_length(), None);
    assert_eq!(header.expert_count(), None);
    assert_eq!(header.vocab_size(), Some(40));
    assert_eq!(header.get_u64_array("vramfit.test.per_layer"), Some(vec![1]));
    assert_eq!(header.get("vramfit.test.i64"), Some(&GgufValue::I64(-(1 << 40))));
    assert_eq!(header.get_u64("vramfit.test.i8"), None, "negative");
    assert_eq!(header.get_f64("vramfit.test.f64"), Some(2.5));
    let tokens = header.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    assert_eq!(tokens.values.as_ref().unwrap()[3], GgufValue::String("tok3".into()));
    assert!(header.data_end().unwrap() <= exp["file_len"].as_u64().unwrap());
    // bytes by type: Q2_K (q, k, o), Q4_K (gate, up), Q6_K (v), Q8_0 (embd, down), F16, F32.
    assert_eq!(header.bytes_by_type.values().sum::<u64>(), header.known_bytes);
    assert_eq!(header.bytes_by_type.len(), 6);
}

#[test]
fn header_prefix_agrees_and_asks_for_more_bytes() {
    let exp = &expected()["gguf"]["llama2l-header.gguf"];
    let file_len = exp["file_len"].as_u64().unwrap();
    let bytes = std::fs::read(fixtures().join("llama2l-header.gguf")).unwrap();
    assert_eq!(bytes.len() as u64, exp["data_offset"].as_u64().unwrap());
    let header = gguf::parse_prefix(&bytes, "llama2l.gguf", file_len).unwrap();
    check_against_reader(&header, exp);
    assert_eq!(header.data_end(), Some(file_len));
    assert_eq!(header.block_count(), Some(2));
    assert_eq!(header.head_count_kv(), Some(2));
    assert_eq!(header.vocab_size(), Some(5000));
    // 5000 tokens are above the stored-array limit: read through, kept as a length.
    let tokens = header.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    assert_eq!((tokens.len, tokens.values.is_none()), (5000, true));
    // Every shorter prefix asks for more, with a bound past what it has; never a panic.
    let mut cut = 0;
    while cut < bytes.len() {
        match gguf::parse_prefix(&bytes[..cut], "llama2l.gguf", file_len) {
            Err(GgufError::NeedMoreBytes { have, need_at_least, .. }) => {
                assert_eq!(have, cut as u64);
                assert!(need_at_least > have && need_at_least <= file_len);
            }
            other => panic!("cut {cut}: {other:?}"),
        }
        cut += 97;
    }
    // As a whole file, the data is missing: the error names the tensor and the file's end.
    let e = gguf::read_header(&bytes[..], "h.gguf", Some(bytes.len() as u64)).unwrap_err();
    assert!(e.to_string().contains("the file has"), "{e}");
    // Without a known length, the header alone parses.
    assert!(gguf::read_header(&bytes[..], "h.gguf", None).is_ok());
}

#[test]
fn split_fixtures() {
    let exp = &expected()["gguf"]["split"];
    let names: Vec<String> = serde_json::from_value(exp["names"].clone()).unwrap();
    let mut tensors = 0;
    for (i, name) in names.iter().enumerate() {
        let header = gguf::read_path(&fixtures().join(name)).unwrap();
        check_against_reader(&header, &exp["files"][name]);
        let split = header.split().unwrap();
        assert_eq!((split.number, split.count), (i as u64, names.len() as u64));
        tensors += header.tensors.len() as u64;
        let parsed = SplitName::parse(name).unwrap();
        assert_eq!(parsed.number as usize, i + 1);
        assert_eq!(parsed.shard_names(), names);
        let paths = gguf::sibling_shard_paths(&fixtures().join(name)).unwrap();
        assert!(paths.iter().all(|p| p.exists()));
    }
    let first = gguf::read_path(&fixtures().join(&names[0])).unwrap();
    assert_eq!(first.split().unwrap().tensors_count, Some(tensors));
}

#[test]
fn type_table_matches_the_gguf_package() {
    let sizes = expected()["ggml_quant_sizes"].as_object().unwrap().clone();
    for (name, v) in &sizes {
        let id = u32::try_from(v[0].as_u64().unwrap()).unwrap();
        let GgmlType::Known(info) = GgmlType::from_id(id) else {
            panic!("{name} ({id}) is missing from GGML_TYPES");
        };
        assert_eq!(info.name, name);
        assert_eq!(
            (info.block_size, info.type_size),
            (v[1].as_u64().unwrap(), v[2].as_u64().unwrap())
        );
    }
    // Ours may only be ahead of the package by types named in llama.cpp's ggml.h after it.
    for t in GGML_TYPES {
        assert!(sizes.contains_key(t.name) || t.name == "Q2_0", "{}", t.name);
    }
    // The brief's spot checks.
    assert_eq!(GgmlType::from_id(12).bytes_for(256), Some(144));
    assert_eq!(GgmlType::from_id(8).bytes_for(32), Some(34));
    assert_eq!(GgmlType::from_id(39).bytes_for(64), Some(34));
}

#[test]
fn hand_written_header_round_trips() {
    let w = Writer::new()
        .string("general.architecture", "qwen2")
        .u32("qwen2.block_count", 2)
        .u32("general.alignment", 16)
        .raw("qwen2.expert_count", 10, &8u64.to_le_bytes())
        .raw("qwen2.expert_used_count", 5, &2i32.to_le_bytes())
        // nested array: [[1, 2], [3]] of u8
        .raw("x.nested", 9, &{
            let mut b = 9u32.to_le_bytes().to_vec();
            b.extend_from_slice(&2u64.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&2u64.to_le_bytes());
            b.extend_from_slice(&[1, 2]);
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&1u64.to_le_bytes());
            b.push(3);
            b
        })
        .tensor("a", &[256, 2], 12, 0)
        .tensor("b", &[32], 0, 288)
        .tensor("c", &[7], 99, 416);
    let bytes = w.file(16, 416 + 5);
    let h = parse_file(&bytes).unwrap();
    assert_eq!(h.alignment, 16);
    assert_eq!(h.expert_count(), Some(8));
    assert_eq!(h.expert_used_count(), Some(2));
    let nested = h.get("x.nested").unwrap().as_array().unwrap();
    assert_eq!(nested.len, 2);
    assert_eq!(h.tensor("a").unwrap().byte_len, Some(288));
    assert_eq!(h.tensor("b").unwrap().byte_len, Some(128));
    // An unknown type degrades to "size unknown".
    let c = h.tensor("c").unwrap();
    assert_eq!((c.ggml_type, c.byte_len, c.elements), (GgmlType::Unknown(99), None, 7));
    assert_eq!((h.known_bytes, h.unknown_type_tensors), (416, 1));
    assert_eq!(h.total_elements, 512 + 32 + 7);
    assert_eq!(h.data_offset % 16, 0);
    // Version 2 reads the same way.
    let mut v2 = w.clone();
    v2.version = 2;
    assert_eq!(parse_file(&v2.file(16, 421)).unwrap().version, 2);
}

#[test]
fn versions_and_magic() {
    let mut w = Writer::new();
    w.version = 1;
    let e = err(&w.header());
    assert!(e.contains("version 1") && e.contains("t.gguf"), "{e}");
    w.version = 3u32.swap_bytes();
    assert!(err(&w.header()).contains("big-endian"));
    w.version = 4;
    assert!(err(&w.header()).contains("versions 2 and 3"));
    let e = err(b"GGML\x03\0\0\0");
    assert!(e.contains("magic") && e.contains("byte 0"), "{e}");
    assert!(matches!(parse_file(b"GG"), Err(GgufError::BadMagic { .. })));
    assert!(matches!(parse_file(b""), Err(GgufError::BadMagic { .. })));
}

fn count_le(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

#[test]
fn absurd_lengths_are_refused_before_any_allocation() {
    // A 2^60-byte string value.
    let mut value = count_le(1 << 60).to_vec();
    value.extend_from_slice(b"abc");
    let bytes = Writer::new().raw("k", 8, &value).header();
    let e = parse_file(&bytes).unwrap_err();
    assert!(matches!(e, GgufError::TooLarge { declared, .. } if declared == 1 << 60), "{e}");
    assert!(e.to_string().contains("key `k`"), "{e}");
    // The same with an unknown file length: the absolute cap applies.
    let e = gguf::read_header(&bytes[..], "t", None).unwrap_err();
    assert!(
        matches!(e, GgufError::TooLarge { limit, .. } if limit == GgufLimits::default().max_string_len)
    );
    // A 2^60-element array of u64 and of strings.
    for elem in [10u32, 8] {
        let mut value = elem.to_le_bytes().to_vec();
        value.extend_from_slice(&count_le(1 << 60));
        let e = err(&Writer::new().raw("tokenizer.ggml.tokens", 9, &value).header());
        assert!(e.contains("tokenizer.ggml.tokens") && e.contains("1152921504606846976"), "{e}");
    }
    // A 2^60-byte key.
    let mut bytes = Writer::new().header();
    bytes[16..24].copy_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&count_le(1 << 60));
    assert!(matches!(parse_file(&bytes), Err(GgufError::TooLarge { .. })));
    // Absurd tensor and key/value counts.
    let mut bytes = Writer::new().header();
    bytes[8..16].copy_from_slice(&count_le(u64::MAX));
    assert!(err(&bytes).contains("tensor count"));
    let mut bytes = Writer::new().header();
    bytes[16..24].copy_from_slice(&count_le(1 << 40));
    assert!(err(&bytes).contains("key/value count"));
    // A huge tensor name.
    let mut w = Writer::new();
    w.n_tensors = 1;
    w.ti.extend_from_slice(&count_le(u64::MAX));
    w.ti.extend_from_slice(&[0; 40]);
    assert!(matches!(parse_file(&w.header()), Err(GgufError::TooLarge { .. })));
    // A small limit on stored arrays and nesting applies too.
    let limits = GgufLimits { max_array_depth: 1, ..GgufLimits::default() };
    let mut value = 9u32.to_le_bytes().to_vec();
    value.extend_from_slice(&count_le(1));
    value.extend_from_slice(&0u32.to_le_bytes());
    value.extend_from_slice(&count_le(0));
    let bytes = Writer::new().raw("deep", 9, &value).header();
    assert!(parse_file(&bytes).is_ok());
    let e = gguf::read_header_with_limits(&bytes[..], "t", None, limits).unwrap_err();
    assert!(e.to_string().contains("nesting"), "{e}");
}

#[test]
fn stored_arrays_have_a_budget() {
    let mut one = 0u32.to_le_bytes().to_vec();
    one.extend_from_slice(&count_le(2));
    one.extend_from_slice(&[7, 8]);
    let bytes = Writer::new().raw("a", 9, &one).raw("b", 9, &one).header();
    let limits = GgufLimits { max_stored_values: 3, ..GgufLimits::default() };
    let h = gguf::read_header_with_limits(&bytes[..], "t", None, limits).unwrap();
    assert_eq!(h.get_u64_array("a"), Some(vec![7, 8]));
    assert_eq!(h.get_u64_array("b"), None);
    assert_eq!(h.array_len("b"), Some(2));
    let limits = GgufLimits { max_stored_array_len: 1, ..GgufLimits::default() };
    let h = gguf::read_header_with_limits(&bytes[..], "t", None, limits).unwrap();
    assert_eq!((h.get_u64_array("a"), h.array_len("a")), (None, Some(2)));
}

#[test]
fn invalid_values_and_tensors_name_what_is_wrong() {
    let cases: Vec<(Vec<u8>, Vec<&str>)> = vec![
        (Writer::new().raw("k", 13, &[]).header(), vec!["key `k`", "0-12"]),
        (Writer::new().raw("k", 9, &13u32.to_le_bytes()).header(), vec!["element type", "0-12"]),
        (Writer::new().raw("flag", 7, &[2]).header(), vec!["flag", "0 or 1"]),
        (Writer::new().u32("a", 1).u32("a", 2).header(), vec!["`a`", "each key once"]),
        (
            Writer::new().u32("general.alignment", 24).header(),
            vec!["general.alignment", "power of two"],
        ),
        (Writer::new().string("general.alignment", "x").header(), vec!["general.alignment"]),
        (
            Writer::new().tensor("t", &[1, 1, 1, 1, 1], 0, 0).file(32, 4),
            vec!["`t`", "5 dimensions"],
        ),
        (Writer::new().tensor("t", &[u64::MAX], 0, 0).file(32, 4), vec!["`t`", "2^63"]),
        (Writer::new().tensor("t", &[1 << 62, 1 << 62], 0, 0).file(32, 4), vec!["`t`", "2^64"]),
        (Writer::new().tensor("t", &[4], 0, 8).file(32, 64), vec!["`t`", "alignment 32"]),
        (
            Writer::new().tensor("a", &[16], 0, 0).tensor("b", &[4], 0, 32).file(32, 64),
            vec!["`a`", "overlap tensor `b`"],
        ),
        (
            Writer::new().tensor("a", &[4], 0, 0).tensor("a", &[4], 0, 32).file(32, 64),
            vec!["`a`", "twice"],
        ),
        (Writer::new().tensor("t", &[64], 0, 0).file(32, 255), vec!["`t`", "the file has"]),
    ];
    for (bytes, needles) in cases {
        let e = err(&bytes);
        assert!(e.contains("t.gguf"), "{e}");
        for n in needles {
            assert!(e.contains(n), "`{n}` not in: {e}");
        }
    }
}

#[test]
fn truncation_everywhere_is_an_error_with_an_offset() {
    let bytes = Writer::new()
        .string("general.architecture", "llama")
        .u32("llama.block_count", 2)
        .tensor("t", &[8], 1, 0)
        .header();
    for cut in 0..bytes.len() {
        let e = gguf::read_header(&bytes[..cut], "t.gguf", None).unwrap_err();
        match e {
            GgufError::Truncated { offset, needed, .. } => {
                assert!(offset <= cut as u64 && needed > 0, "{cut}");
            }
            GgufError::BadMagic { .. } if cut < 4 => {}
            other => panic!("cut {cut}: {other}"),
        }
    }
}

#[test]
fn io_errors_are_reported() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("cable unplugged"))
        }
    }
    let e = gguf::read_header(Failing, "f.gguf", None).unwrap_err().to_string();
    assert!(e.contains("cable unplugged") && e.contains("f.gguf"), "{e}");
}

// ---- property tests -------------------------------------------------------------------------

/// A generated value with its encoding.
fn arb_value() -> impl Strategy<Value = (u32, Vec<u8>, GgufValue)> {
    let leaf = prop_oneof![
        any::<u8>().prop_map(|v| (0, vec![v], GgufValue::U8(v))),
        any::<i16>().prop_map(|v| (3, v.to_le_bytes().to_vec(), GgufValue::I16(v))),
        any::<u32>().prop_map(|v| (4, v.to_le_bytes().to_vec(), GgufValue::U32(v))),
        any::<i32>().prop_map(|v| (5, v.to_le_bytes().to_vec(), GgufValue::I32(v))),
        (-1e6f32..1e6).prop_map(|v| (6, v.to_le_bytes().to_vec(), GgufValue::F32(v))),
        any::<bool>().prop_map(|v| (7, vec![u8::from(v)], GgufValue::Bool(v))),
        "[a-z▁ ]{0,10}".prop_map(|s| {
            let mut b = Vec::new();
            put_str(&mut b, &s);
            (8, b, GgufValue::String(s))
        }),
        any::<u64>().prop_map(|v| (10, v.to_le_bytes().to_vec(), GgufValue::U64(v))),
        any::<i64>().prop_map(|v| (11, v.to_le_bytes().to_vec(), GgufValue::I64(v))),
        (-1e9f64..1e9).prop_map(|v| (12, v.to_le_bytes().to_vec(), GgufValue::F64(v))),
    ];
    leaf.prop_recursive(2, 24, 6, |inner| {
        (0u32..13, proptest::collection::vec(inner, 0..6)).prop_map(|(_, items)| {
            // Arrays are homogeneous: keep the items of the first item's type.
            let ty: u32 = items.first().map_or(0, |(t, _, _)| *t);
            let items: Vec<_> = items.into_iter().filter(|(t, _, _)| *t == ty).collect();
            let mut b = ty.to_le_bytes().to_vec();
            b.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for (_, bytes, _) in &items {
                b.extend_from_slice(bytes);
            }
            let array = gguf::GgufArray {
                element_type: GgufValueType::from_id(ty).unwrap(),
                len: items.len() as u64,
                values: Some(items.into_iter().map(|(_, _, v)| v).collect()),
            };
            (9, b, GgufValue::Array(array))
        })
    })
}

fn arb_known_type() -> impl Strategy<Value = u32> {
    proptest::sample::select(GGML_TYPES.iter().map(|t| t.id).collect::<Vec<_>>())
}

/// A generated file: its bytes, its key/values, and its tensors' (dims, ggml type).
type GeneratedFile = (Vec<u8>, Vec<(String, GgufValue)>, Vec<(Vec<u64>, u32)>);

fn arb_file() -> impl Strategy<Value = GeneratedFile> {
    (
        proptest::collection::vec(arb_value(), 0..8),
        proptest::collection::vec(
            (proptest::collection::vec(1u64..5, 1..4), arb_known_type()),
            0..6,
        ),
    )
        .prop_map(|(values, tensors)| {
            let mut w = Writer::new();
            let mut kvs = Vec::new();
            for (i, (ty, bytes, value)) in values.into_iter().enumerate() {
                let key = format!("k.{i}");
                w = w.raw(&key, ty, &bytes);
                kvs.push((key, value));
            }
            let mut offset = 0u64;
            let mut shapes = Vec::new();
            for (i, (mut dims, ty)) in tensors.into_iter().enumerate() {
                let block = GgmlType::from_id(ty);
                let GgmlType::Known(info) = block else { unreachable!() };
                dims[0] *= info.block_size;
                w = w.tensor(&format!("t.{i}"), &dims, ty, offset);
                let elements: u64 = dims.iter().product();
                offset += block.bytes_for(elements).unwrap().next_multiple_of(32);
                shapes.push((dims, ty));
            }
            (w.file(32, usize::try_from(offset).unwrap()), kvs, shapes)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_file(&bytes);
        let _ = gguf::read_header(&bytes[..], "fuzz", None);
        let _ = gguf::parse_prefix(&bytes, "fuzz", u64::MAX);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_preamble_never_panic(
        version in 2u32..4,
        tensors in 0u64..4,
        kvs in 0u64..4,
        rest in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&tensors.to_le_bytes());
        bytes.extend_from_slice(&kvs.to_le_bytes());
        bytes.extend_from_slice(&rest);
        let _ = parse_file(&bytes);
        let _ = gguf::read_header(&bytes[..], "fuzz", None);
    }

    #[test]
    fn round_trip((bytes, kvs, tensors) in arb_file()) {
        let h = parse_file(&bytes).unwrap();
        prop_assert_eq!(&h.metadata, &kvs);
        prop_assert_eq!(h.tensors.len(), tensors.len());
        for (t, (dims, ty)) in h.tensors.iter().zip(&tensors) {
            prop_assert_eq!(&t.dims, dims);
            prop_assert_eq!(t.ggml_type.id(), *ty);
        }
        prop_assert_eq!(h.unknown_type_tensors, 0);
        prop_assert!(h.data_end().unwrap() <= bytes.len() as u64);
    }

    #[test]
    fn mutated_valid_headers_never_panic(
        (bytes, _, _) in arb_file(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = bytes;
        for (at, byte, kind) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        let _ = parse_file(&bytes);
        let _ = gguf::read_header(&bytes[..], "mut", None);
        let _ = gguf::parse_prefix(&bytes[..bytes.len() / 2], "mut", bytes.len() as u64);
    }

    #[test]
    fn split_names_round_trip(prefix in "[A-Za-z0-9_.-]{1,20}", count in 1u32..2000, pick in any::<prop::sample::Index>()) {
        let number = u32::try_from(pick.index(count as usize)).unwrap() + 1;
        let name = format!("{prefix}-{number:05}-of-{count:05}.gguf");
        let parsed = SplitName::parse(&name).unwrap();
        prop_assert_eq!((parsed.number, parsed.count), (number, count));
        prop_assert_eq!(parsed.shard_name(number), name);
    }
}

#[test]
fn strings_past_a_mebibyte_are_skipped_not_kept() {
    // Eight strings of 2 MiB each (a hostile header's 60 MB ones, scaled down):
    // none is kept, each is known by its length, and the keys read still read.
    let long = "x".repeat(2 << 20);
    let mut w = Writer::new().string("general.architecture", "llama");
    for i in 0..8 {
        w = w.string(&format!("junk.{i}"), &long);
    }
    let template = "{% for m in messages %}{{ m }}{% endfor %}".repeat(1000);
    w = w.string("tokenizer.chat_template", &template);
    let h = parse_file(&w.file(32, 0)).unwrap();
    assert_eq!(h.get("general.architecture").and_then(GgufValue::as_str), Some("llama"));
    for i in 0..8 {
        let value = h.get(&format!("junk.{i}")).unwrap();
        assert_eq!(value, &GgufValue::LongString { len: 2 << 20 });
        assert_eq!(value.value_type(), GgufValueType::String);
        assert_eq!(value.as_str(), None);
    }
    // At the limit a string is still kept: a real chat template is far below it.
    assert_eq!(h.get("tokenizer.chat_template").and_then(GgufValue::as_str), Some(&*template));
    let edge = "y".repeat(usize::try_from(gguf::MAX_KEPT_STRING).unwrap());
    let h = parse_file(&Writer::new().string("a", &edge).file(32, 0)).unwrap();
    assert_eq!(h.get("a").and_then(GgufValue::as_str).map(str::len), Some(edge.len()));
}
