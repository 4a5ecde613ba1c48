//! The committed JSON Schema (`schema/vramfit.schema.json`) is the one the
//! document structs generate: a change to a document that does not update
//! the schema fails here. Regenerate it with
//! `VRAMFIT_UPDATE_SCHEMA=1 cargo test -p vramfit-report --test schema`.

use std::path::Path;

#[test]
fn committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/vramfit.schema.json");
    let generated = serde_json::to_string_pretty(&vramfit_report::schema()).unwrap() + "\n";
    if std::env::var_os("VRAMFIT_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/vramfit.schema.json is stale: regenerate it with \
         VRAMFIT_UPDATE_SCHEMA=1 cargo test -p vramfit-report --test schema"
    );
}

#[test]
fn every_document_is_in_the_schema_with_its_version() {
    let schema = vramfit_report::schema();
    let definitions = schema["$defs"].as_object().expect("definitions");
    for document in [
        "ParamsDocument",
        "EstimateDocument",
        "EngineDocument",
        "EngineSweepDocument",
        "FitDocument",
        "RulesDocument",
        "InspectDocument",
        "ModelsDocument",
        "GpusDocument",
        "AccuracyDocument",
        "EngineLogDocument",
    ] {
        let definition = &definitions[document];
        let required: Vec<&str> = definition["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{document} has required fields"))
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(required.contains(&"schema_version"), "{document}: {required:?}");
        assert!(definition["properties"]["schema_version"]["type"] == "integer", "{document}");
    }
    assert_eq!(schema["anyOf"].as_array().map(Vec::len), Some(11));
}
