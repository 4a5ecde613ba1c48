/*!
vramfit's typed output contract: every JSON document its shells print.

The CLI's `--json`, the web page and the Python package serialize these
structs and nothing else, so a document means the same wherever it comes
from. Each is built from the core's results ([`vramfit_core`]) and the
sources' descriptions ([`vramfit_sources`]); field order is the order of
declaration. [`schema`] gives the JSON Schema of all of them, committed as
`schema/vramfit.schema.json` and checked for drift by the test suite.

Bytes are integers; `schema_version` ([`SCHEMA_VERSION`]) changes only when
a field's meaning does.

```
use vramfit_core::memory::{estimate, runtime::Runtime};
use vramfit_core::workload::{Training, Workload};
use vramfit_report::EstimateDocument;

let model = vramfit_sources::resolve_model("llama-3.2-1b")?;
let workload = Workload::Training(Training::lora());
let result = estimate(&model.parsed.spec, &workload, &Runtime::HOPPER)?;
let document = EstimateDocument::new(&model, &workload, &result, &Runtime::HOPPER, None);
let json = serde_json::to_value(&document)?;
assert_eq!(json["memory"]["peak_allocated_bytes"], result.peak_allocated_bytes);
assert_eq!(json["workload"]["mode"], "training");
# Ok::<(), Box<dyn std::error::Error>>(())
```
*/

mod documents;
mod ordered;

pub use documents::*;
pub use ordered::OrderedMap;

/// The version of every document's layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The framework versions the estimates model, named in training and
/// inference documents.
pub const MODELLED_VERSIONS: [(&str, &str); 4] = [
    ("torch", "2.11"),
    ("transformers", "5.x (checked on 5.23–5.24)"),
    ("peft", "0.21"),
    ("bitsandbytes", "0.45+ (formulas, not measured)"),
];

/// The JSON Schema of every document, as one schema whose `$defs` hold each
/// document by name and whose top level accepts any one of them.
pub fn schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut generator = generator;
    let documents = [
        ("ParamsDocument", generator.subschema_for::<ParamsDocument>()),
        ("EstimateDocument", generator.subschema_for::<EstimateDocument>()),
        ("EngineDocument", generator.subschema_for::<EngineDocument>()),
        ("EngineSweepDocument", generator.subschema_for::<EngineSweepDocument>()),
        ("FitDocument", generator.subschema_for::<FitDocument>()),
        ("RulesDocument", generator.subschema_for::<RulesDocument>()),
        ("InspectDocument", generator.subschema_for::<InspectDocument>()),
        ("ModelsDocument", generator.subschema_for::<ModelsDocument>()),
        ("GpusDocument", generator.subschema_for::<GpusDocument>()),
        ("AccuracyDocument", generator.subschema_for::<AccuracyDocument>()),
        ("EngineLogDocument", generator.subschema_for::<EngineLogDocument>()),
    ];
    let definitions = generator.take_definitions(true);
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "vramfit JSON documents",
        "description": format!(
            "Every document vramfit prints with --json (schema_version {SCHEMA_VERSION})."
        ),
        "anyOf": documents.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        "$defs": definitions,
    })
}
