//! safetensors header parsing: fixtures written by the real writer, cross-checks against the
//! `safetensors` crate, hostile inputs, and property tests (never a panic, round trips).

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::{Value, json};
use vramfit_sources::safetensors::{
    self as st, Dtype, MAX_HEADER_SIZE, SafetensorsError, StorageFormat, TensorEntry,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/headers")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A tiny writer: the 8-byte length then the JSON text, padded with spaces like the real
/// writer when `pad` is set.
fn file_of(json: &str) -> Vec<u8> {
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    bytes
}

/// Writes a header for `(name, dtype, shape, byte length)` tensors laid out contiguously in the
/// given order, with optional metadata.
fn write_header(tensors: &[Spec], metadata: Option<&[(String, String)]>) -> String {
    let mut map = serde_json::Map::new();
    if let Some(meta) = metadata {
        let m: serde_json::Map<String, Value> =
            meta.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        map.insert("__metadata__".into(), Value::Object(m));
    }
    let mut offset = 0u64;
    for (name, dtype, shape, len) in tensors {
        map.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    Value::Object(map).to_string()
}

fn parse(json: &str) -> Result<st::SafetensorsHeader, SafetensorsError> {
    st::parse_bytes(&file_of(json), "test.safetensors")
}

fn err(json: &str) -> String {
    parse(json).unwrap_err().to_string()
}

const FIXTURES: [&str; 5] = [
    "dtypes.safetensors",
    "gptq.safetensors",
    "bnb4.safetensors",
    "fp8.safetensors",
    "mxfp4.safetensors",
];

#[test]
fn fixtures_agree_with_what_the_writer_wrote() {
    let expected = expected();
    for name in FIXTURES {
        let exp = &expected["safetensors"][name];
        let header = st::read_path(&fixtures().join(name)).unwrap();
        assert_eq!(header.header_len, exp["header_len"].as_u64().unwrap(), "{name}");
        let file_len = exp["file_len"].as_u64().unwrap();
        assert_eq!(header.total_bytes, file_len - 8 - header.header_len, "{name}");
        assert_eq!(header.expected_file_len(), Some(file_len));
        let meta: BTreeMap<String, String> =
            serde_json::from_value(exp["metadata"].clone()).unwrap();
        assert_eq!(header.metadata, meta, "{name}");
        let tensors = exp["tensors"].as_object().unwrap();
        assert_eq!(header.tensors.len(), tensors.len(), "{name}");
        let mut by_dtype: BTreeMap<String, u64> = BTreeMap::new();
        for (tname, t) in tensors {
            let got = header.tensor(tname).unwrap_or_else(|| panic!("{name}: {tname}"));
            assert_eq!(got.dtype.name(), t["dtype"].as_str().unwrap(), "{tname}");
            assert!(!matches!(got.dtype, Dtype::Unknown(_)), "{tname}");
            let shape: Vec<u64> = serde_json::from_value(t["shape"].clone()).unwrap();
            assert_eq!(got.shape, shape, "{tname}");
            let offsets: (u64, u64) = serde_json::from_value(t["data_offsets"].clone()).unwrap();
            assert_eq!(got.data_offsets, offsets, "{tname}");
            assert_eq!(got.byte_len, offsets.1 - offsets.0);
            *by_dtype.entry(got.dtype.name().to_owned()).or_default() += got.byte_len;
        }
        let ours: BTreeMap<String, u64> =
            header.bytes_by_dtype.iter().map(|(d, b)| (d.name().to_owned(), *b)).collect();
        assert_eq!(ours, by_dtype, "{name}");
        for pair in header.tensors.windows(2) {
            assert_eq!(pair[0].data_offsets.1, pair[1].data_offsets.0);
        }
    }
}

#[test]
fn fixtures_agree_with_the_safetensors_crate() {
    for name in FIXTURES {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        let reference = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let ours = st::parse_bytes(&bytes, name).unwrap();
        assert_eq!(reference.len(), ours.tensors.len());
        for (tname, view) in reference.tensors() {
            let t = ours.tensor(&tname).unwrap();
            assert_eq!(format!("{:?}", view.dtype()), t.dtype.name(), "{tname}");
            let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
            assert_eq!(shape, t.shape);
            assert_eq!(view.data().len() as u64, t.byte_len);
        }
    }
}

#[test]
fn every_dtype_of_the_writer_is_known_with_its_bits() {
    let header = st::read_path(&fixtures().join("dtypes.safetensors")).unwrap();
    let bits = |n: &str| header.tensor(n).unwrap().dtype.bits().unwrap();
    assert_eq!(bits("t.f4"), 4);
    assert_eq!(bits("o.e4m3"), 8);
    assert_eq!(bits("q.e8m0"), 8);
    assert_eq!(bits("n.c64"), 64);
    assert_eq!(bits("g.bool"), 8);
    // 2 × 4 F4 values are 4 bytes; a scalar is one element; a zero dim is no bytes.
    assert_eq!(header.tensor("t.f4").unwrap().byte_len, 4);
    assert_eq!(header.tensor("u.scalar").unwrap().elements(), 1);
    assert_eq!(header.tensor("v.empty").unwrap().byte_len, 0);
    // F6 (not written by the Python package) by hand: 4 values of 6 bits are 3 bytes.
    let h = parse(r#"{"a":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[0,3]}}"#).unwrap();
    assert_eq!(h.tensors[0].dtype, Dtype::F6_E2M3);
    assert_eq!(h.total_bytes, 3);
}

fn weight<'a>(s: &'a st::ParameterSummary, name: &str) -> &'a st::LogicalWeight {
    s.weights.iter().find(|w| w.name == name).unwrap_or_else(|| panic!("no weight {name}"))
}

#[test]
fn gptq_fixture_counts_logical_parameters() {
    let h = st::read_path(&fixtures().join("gptq.safetensors")).unwrap();
    let s = st::count_logical_parameters(&h.tensors);
    let w = weight(&s, "model.layers.0.mlp.up_proj.weight");
    assert_eq!(w.format, StorageFormat::GptqAwq);
    assert_eq!(w.tensor, "model.layers.0.mlp.up_proj.qweight");
    assert_eq!(w.logical_parameters, 64 * 48);
    assert_eq!(w.stored_bytes, 8 * 48 * 4);
    // qzeros (2×6 I32) + scales (2×48 F16) + g_idx (64 I32).
    assert_eq!(w.auxiliary_bytes, 2 * 6 * 4 + 2 * 48 * 2 + 64 * 4);
    assert_eq!(s.logical_parameters, 64 * 48 + 48 + 64);
    assert_eq!(s.stored_bytes, h.total_bytes);
    assert_eq!(s.auxiliary_bytes, w.auxiliary_bytes);
    assert_eq!(s.weights.len(), 3);
    assert_eq!(s.by_format[&StorageFormat::Plain].logical_parameters, 48 + 64);
}

#[test]
fn bnb4_fixture_counts_logical_parameters() {
    let h = st::read_path(&fixtures().join("bnb4.safetensors")).unwrap();
    let s = st::count_logical_parameters(&h.tensors);
    let w = weight(&s, "model.layers.0.self_attn.q_proj.weight");
    assert_eq!(w.format, StorageFormat::Bnb4Bit);
    assert_eq!(w.logical_parameters, 64 * 32);
    assert_eq!(w.auxiliary_bytes, 32 + 16 * 4 + 4 + 256 * 4 + 97);
    assert_eq!(s.logical_parameters, 64 * 32 + 640);
    assert_eq!(s.weights.len(), 2);
    assert_eq!(s.stored_bytes, h.total_bytes);
}

#[test]
fn fp8_fixture_counts_logical_parameters() {
    let h = st::read_path(&fixtures().join("fp8.safetensors")).unwrap();
    let s = st::count_logical_parameters(&h.tensors);
    let down = weight(&s, "model.layers.0.mlp.down_proj.weight");
    assert_eq!(down.format, StorageFormat::Fp8Scaled);
    assert_eq!(down.logical_parameters, 256 * 128);
    assert_eq!(down.auxiliary_bytes, 8);
    let o = weight(&s, "model.layers.0.self_attn.o_proj.weight");
    assert_eq!(o.auxiliary_bytes, 8, "weight_scale and input_scale");
    assert_eq!(s.logical_parameters, 256 * 128 + 64 * 64 + 64);
    assert_eq!(s.auxiliary_bytes, 16);
}

#[test]
fn mxfp4_fixture_counts_logical_parameters() {
    let h = st::read_path(&fixtures().join("mxfp4.safetensors")).unwrap();
    let s = st::count_logical_parameters(&h.tensors);
    let w = weight(&s, "model.layers.0.mlp.experts.gate_up_proj");
    assert_eq!(w.format, StorageFormat::Mxfp4);
    assert_eq!(w.logical_parameters, 2 * 2 * 16 * 2 * 16);
    assert_eq!(w.auxiliary_bytes, 2 * 16 * 2);
    assert_eq!(s.logical_parameters, 2048 + 32);
}

#[test]
fn companions_without_a_packed_owner_are_parameters() {
    // A plain model with tensors that merely look like companions.
    let t = |name: &str, dtype: Dtype, shape: Vec<u64>, len: u64| TensorEntry {
        name: name.into(),
        dtype,
        shape,
        data_offsets: (0, len),
        byte_len: len,
    };
    let tensors = [
        t("a.scales", Dtype::F32, vec![4], 16),
        t("b.weight_scale", Dtype::F32, vec![1], 4),
        t("b.weight", Dtype::BF16, vec![4], 8),
        t("c_scales", Dtype::U8, vec![2], 2),
        t("d.qweight", Dtype::F16, vec![2], 4),
        t("e.weight.absmax", Dtype::F32, vec![3], 12),
    ];
    let s = st::count_logical_parameters(&tensors);
    assert_eq!(s.logical_parameters, 4 + 1 + 4 + 2 + 2 + 3);
    assert_eq!(s.auxiliary_bytes, 0);
    assert!(s.weights.iter().all(|w| w.format == StorageFormat::Plain));
}

#[test]
fn bnb8_companions() {
    let t = |name: &str, dtype: Dtype, shape: Vec<u64>, len: u64| TensorEntry {
        name: name.into(),
        dtype,
        shape,
        data_offsets: (0, len),
        byte_len: len,
    };
    let tensors = [
        t("l.weight", Dtype::I8, vec![8, 4], 32),
        t("l.SCB", Dtype::F32, vec![8], 32),
        t("l.weight_format", Dtype::U8, vec![], 1),
    ];
    let s = st::count_logical_parameters(&tensors);
    assert_eq!(s.logical_parameters, 32);
    assert_eq!(s.auxiliary_bytes, 33);
    assert_eq!(s.weights[0].format, StorageFormat::Bnb8Bit);
}

#[test]
fn index_fixture() {
    let expected = expected();
    let path = fixtures().join("model.safetensors.index.json");
    let index = st::read_index(std::fs::File::open(&path).unwrap(), "index.json").unwrap();
    let exp = &expected["safetensors"]["model.safetensors.index.json"];
    assert_eq!(index.total_size, exp["metadata"]["total_size"].as_u64());
    let map: BTreeMap<String, String> = serde_json::from_value(exp["weight_map"].clone()).unwrap();
    assert_eq!(index.weight_map, map);
    assert_eq!(
        index.shards(),
        ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    );
    // Its total is what our parser finds in the shards' headers.
    let sum: u64 = ["gptq.safetensors", "fp8.safetensors"]
        .iter()
        .map(|f| st::read_path(&fixtures().join(f)).unwrap().total_bytes)
        .sum();
    assert_eq!(index.total_size, Some(sum));
}

#[test]
fn index_errors_name_the_key() {
    let parse = |s: &str| st::parse_index_bytes(s.as_bytes(), "idx.json");
    for (text, needle) in [
        (r#"{"weight_map":{"a":"../secret"}}"#, "weight_map.a"),
        (r#"{"weight_map":{"a":"/etc/passwd"}}"#, "inside the checkpoint"),
        (r#"{"weight_map":{"a":"x\\y"}}"#, "weight_map.a"),
        (r#"{"weight_map":{"a":"C:x"}}"#, "weight_map.a"),
        (r#"{"weight_map":{"a":""}}"#, "weight_map.a"),
        (r#"{"weight_map":{"a":3}}"#, "weight_map.a"),
        (r#"{"metadata":{"total_size":-1},"weight_map":{}}"#, "metadata.total_size"),
        (r#"{"metadata":{"total_size":1.5},"weight_map":{}}"#, "metadata.total_size"),
        (r#"{"metadata":[],"weight_map":{}}"#, "metadata"),
        (r#"{"metadata":{}}"#, "weight_map"),
        ("[]", "idx.json"),
        ("{", "not valid JSON"),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains("idx.json"), "{text}: {e}");
    }
    let ok = parse(r#"{"metadata":{"total_size":12.0,"total_parameters":3},"weight_map":{"a":"sub/x.safetensors"}}"#)
        .unwrap();
    assert_eq!((ok.total_size, ok.total_parameters), (Some(12), Some(3)));
    // Above the size bound, rejected by size, whatever the content.
    let big = vec![b' '; usize::try_from(st::MAX_INDEX_SIZE).unwrap() + 1];
    assert!(matches!(
        st::read_index(&big[..], "big.json"),
        Err(SafetensorsError::IndexTooLarge { .. })
    ));
}

#[test]
fn header_length_above_the_limit_names_offset_and_limit() {
    for declared in [MAX_HEADER_SIZE + 1, 1 << 60, u64::MAX] {
        let mut bytes = declared.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let e = st::parse_bytes(&bytes, "big.safetensors").unwrap_err();
        assert!(matches!(e, SafetensorsError::HeaderTooLarge { .. }));
        let msg = e.to_string();
        assert!(msg.contains("big.safetensors") && msg.contains("byte offset 0"), "{msg}");
        assert!(msg.contains("100000000"), "{msg}");
    }
}

#[test]
fn truncation_is_reported_with_offsets() {
    let e = st::parse_bytes(&[1, 2, 3], "t").unwrap_err();
    assert!(matches!(e, SafetensorsError::Truncated { offset: 0, expected: 8, found: 3, .. }));
    // A header length just under the limit with 2 bytes behind it: no 100 MB allocation, an
    // error saying what was expected.
    let mut bytes = (MAX_HEADER_SIZE - 1).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let e = st::parse_bytes(&bytes, "t").unwrap_err();
    assert!(
        matches!(e, SafetensorsError::Truncated { offset: 8, expected, found: 2, .. } if expected == MAX_HEADER_SIZE - 1)
    );
    // With the file length known, rejected before reading.
    let e = st::read_header_bounded(&bytes[..], "t", Some(20)).unwrap_err();
    assert!(matches!(e, SafetensorsError::Truncated { found: 12, .. }), "{e}");
}

#[test]
fn file_length_is_checked_by_read_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = file_of(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#);
    bytes.extend_from_slice(&[0; 7]); // one byte short
    let path = dir.path().join("short.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let e = st::read_path(&path).unwrap_err().to_string();
    assert!(e.contains("short.safetensors") && e.contains("file has"), "{e}");
    // The header alone parses (a range-fetched prefix).
    assert_eq!(st::parse_bytes(&bytes, "p").unwrap().total_bytes, 8);
}

#[test]
fn io_errors_are_reported() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let e = st::read_header(Failing, "f").unwrap_err().to_string();
    assert!(e.contains("disk on fire") && e.contains("`f`"), "{e}");
}

#[test]
fn malformed_headers_name_the_tensor_or_key() {
    for (json, needles) in [
        ("[1]", vec!["JSON object"]),
        ("{", vec!["not valid JSON", "line 1"]),
        (r#"{"__metadata__":{"a":1}}"#, vec!["__metadata__.a", "a string"]),
        (r#"{"__metadata__":[]}"#, vec!["__metadata__"]),
        (r#"{"w":1}"#, vec!["`w`"]),
        (r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, vec!["w.dtype"]),
        (r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, vec!["w.shape"]),
        (r#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, vec!["w.shape"]),
        (r#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#, vec!["w.shape"]),
        (r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#, vec!["w.data_offsets"]),
        (r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, vec!["`w`", "end before"]),
        (
            r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            vec!["`w`", "needs 12 bytes", "hold 8"],
        ),
        (
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            vec!["`w`", "gap", "begin at 0"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            vec!["`b`", "overlap"],
        ),
        (
            r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
            vec!["`w`", "2^64"],
        ),
        (
            r#"{"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}"#,
            vec!["`w`", "2^64 bits"],
        ),
        (
            r#"{"w":{"dtype":"X9","shape":[3],"data_offsets":[0,2]}}"#,
            vec!["`w`", "unknown dtype `X9`", "cannot be known"],
        ),
        (r#"{"w":{"dtype":"X9","shape":[0],"data_offsets":[0,2]}}"#, vec!["`w`", "unknown dtype"]),
    ] {
        let e = err(json);
        assert!(e.contains("test.safetensors"), "{e}");
        for n in needles {
            assert!(e.contains(n), "{json}: `{n}` not in: {e}");
        }
    }
}

#[test]
fn unknown_dtype_is_counted_by_its_offsets() {
    let h = parse(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"q":{"dtype":"Q3_X","shape":[8],"data_offsets":[8,11]}}"#,
    )
    .unwrap();
    assert_eq!(h.total_bytes, 11);
    assert_eq!(h.bytes_by_dtype[&Dtype::Unknown("Q3_X".into())], 3);
    assert_eq!(h.tensor("q").unwrap().dtype.bits(), None);
}

#[test]
fn empty_and_odd_headers() {
    let h = parse("{}").unwrap();
    assert_eq!((h.total_bytes, h.tensors.len()), (0, 0));
    let h = parse(r#"{"__metadata__":null}   "#).unwrap();
    assert!(h.metadata.is_empty());
    // Extra fields in a tensor entry are ignored, like the reference implementation.
    let h = parse(r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":true}}"#).unwrap();
    assert_eq!(h.total_bytes, 1);
    // Offsets out of name order are sorted by offset.
    let h = parse(
        r#"{"z":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#,
    )
    .unwrap();
    assert_eq!(h.tensors[0].name, "z");
}

// ---- property tests -------------------------------------------------------------------------

const KNOWN: [&str; 22] = [
    "BOOL",
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "U8",
    "I8",
    "F8_E5M2",
    "F8_E4M3",
    "F8_E8M0",
    "F8_E4M3FNUZ",
    "F8_E5M2FNUZ",
    "I16",
    "U16",
    "F16",
    "BF16",
    "I32",
    "U32",
    "F32",
    "C64",
    "F64",
    "I64",
    "U64",
];

fn bits_of(dtype: &str) -> Option<u64> {
    Dtype::from_name(dtype).bits()
}

prop_compose! {
    fn arb_tensor()(
        dtype in prop_oneof![8 => proptest::sample::select(&KNOWN[..]).prop_map(str::to_owned),
                             1 => "[A-Z][A-Z0-9_]{1,6}"],
        shape in proptest::collection::vec(0u64..9, 0..4),
        unknown_bits in 1u64..5,
    ) -> (String, Vec<u64>, u64) {
        let elements: u64 = shape.iter().product();
        let len = match bits_of(&dtype) {
            Some(bits) => (elements * bits).div_ceil(8),
            // An unknown dtype: a whole number of bytes per element (bits a multiple of 8).
            None => elements * unknown_bits,
        };
        (dtype, shape, len)
    }
}

/// A tensor as the test writer takes it: (name, dtype, shape, byte length).
type Spec = (String, String, Vec<u64>, u64);

fn arb_valid_file() -> impl Strategy<Value = (Vec<u8>, Vec<Spec>)> {
    (
        proptest::collection::vec(arb_tensor(), 0..12),
        proptest::option::of(proptest::collection::vec(("[a-z_]{1,8}", ".{0,12}"), 0..4)),
        0usize..9,
    )
        .prop_map(|(tensors, meta, pad)| {
            let tensors: Vec<_> = tensors
                .into_iter()
                .enumerate()
                .map(|(i, (d, s, l))| (format!("t{i}.weight"), d, s, l))
                .collect();
            let mut json = write_header(&tensors, meta.as_deref());
            json.push_str(&" ".repeat(pad));
            (file_of(&json), tensors)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = st::parse_bytes(&bytes, "fuzz");
        let _ = st::parse_header_json(&bytes, bytes.len() as u64, "fuzz");
        let _ = st::parse_index_bytes(&bytes, "fuzz");
    }

    #[test]
    fn arbitrary_json_never_panics(json in r#"\{("[a-z_]{0,4}":\{("(dtype|shape|data_offsets|x)":(\[[0-9, -]{0,12}\]|"[A-Z0-9_]{0,6}"|[0-9]{1,20}|null),?){0,4}\},?){0,4}\}"#) {
        let _ = st::parse_bytes(&file_of(&json), "fuzz");
    }

    #[test]
    fn round_trip((bytes, tensors) in arb_valid_file()) {
        let h = st::parse_bytes(&bytes, "rt").unwrap();
        prop_assert_eq!(h.tensors.len(), tensors.len());
        let mut total = 0;
        for (name, dtype, shape, len) in &tensors {
            let t = h.tensor(name).unwrap();
            prop_assert_eq!(t.dtype.name(), dtype.as_str());
            prop_assert_eq!(&t.shape, shape);
            prop_assert_eq!(t.byte_len, *len);
            total += len;
        }
        prop_assert_eq!(h.total_bytes, total);
        prop_assert_eq!(h.bytes_by_dtype.values().sum::<u64>(), total);
        // And the summary never loses bytes.
        let s = st::count_logical_parameters(&h.tensors);
        prop_assert_eq!(s.stored_bytes, total);
    }

    #[test]
    fn agrees_with_the_safetensors_crate((bytes, tensors) in arb_valid_file()) {
        let n = usize::try_from(u64::from_le_bytes(bytes[..8].try_into().unwrap())).unwrap();
        let reference = serde_json::from_slice::<safetensors::tensor::Metadata>(&bytes[8..8 + n]);
        let ours = st::parse_bytes(&bytes, "x");
        let reference_can = tensors.iter().all(|(_, d, s, _)| {
            bits_of(d).is_some_and(|b| s.iter().product::<u64>() * b % 8 == 0)
        });
        if reference_can {
            let reference = reference.unwrap();
            let ours = ours.unwrap();
            prop_assert_eq!(reference.data_len() as u64, ours.total_bytes);
            for (name, info) in reference.tensors() {
                let t = ours.tensor(&name).unwrap();
                prop_assert_eq!(format!("{:?}", info.dtype), t.dtype.name());
                prop_assert_eq!((info.data_offsets.0 as u64, info.data_offsets.1 as u64), t.data_offsets);
            }
        } else {
            // Unknown dtypes and sub-byte remainders: the crate refuses, we count.
            prop_assert!(ours.is_ok());
        }
    }

    #[test]
    fn mutated_valid_headers_never_panic(
        (bytes, _) in arb_valid_file(),
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
        let _ = st::parse_bytes(&bytes, "mut");
        // Truncated at every length: an error or a header, never a panic.
        let _ = st::parse_bytes(&bytes[..bytes.len() / 2], "mut");
    }
}
