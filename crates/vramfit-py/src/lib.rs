//! `vramfit._native`: the `vramfit` command's own library, called in process by
//! the Python package (`python/vramfit`). Two functions: `main` runs the
//! command on the process's streams (the `vramfit` script), `run` runs it with
//! its output captured (the Python API).

use pyo3::prelude::*;

/// mimalloc for the module's own allocations: a call allocates and frees
/// thousands of small objects (clap's matches, the trace, the document), and
/// glibc's malloc was about 40 % of a call's instructions (callgrind).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pyo3::types::{PyDict, PyList, PyString};

/// Runs `vramfit` on `argv` (the program name first) with the process's
/// standard streams; returns the exit code.
#[pyfunction]
fn main(argv: Vec<String>) -> u8 {
    // A panic is a bug, reported as exit code 101; the interpreter goes on.
    std::panic::catch_unwind(|| vramfit::main(argv)).unwrap_or(101)
}

/// Runs `vramfit` on `argv` with its output captured; `config` is
/// `(name, config.json text)` standing for the model. Returns
/// `(exit code, stdout, stderr, error kind, setting)`; the kind is one of
/// `model_not_found`, `invalid_setting`, `hub`, `header`, `other`, `panic`,
/// or `None` on success.
#[pyfunction]
#[pyo3(signature = (argv, config=None))]
fn run(argv: Vec<String>, config: Option<(String, String)>) -> Captured {
    let (outcome, kind, setting) = captured(argv, config.as_ref(), false);
    (outcome.code, outcome.stdout, outcome.stderr, kind, setting)
}

/// Runs the command with its output captured; the kind of its error as a
/// Python-side name, and the setting at fault.
fn captured(
    argv: Vec<String>,
    config: Option<&(String, String)>,
    as_value: bool,
) -> (vramfit::Outcome, Option<&'static str>, Option<String>) {
    let config = config.map(|(name, text)| (name.as_str(), text.as_str()));
    let Ok(outcome) = std::panic::catch_unwind(|| vramfit::run_captured(argv, config, as_value))
    else {
        let outcome = vramfit::Outcome {
            code: 101,
            stdout: String::new(),
            stderr: "vramfit panicked (a bug)".to_owned(),
            error: None,
            document: None,
        };
        return (outcome, Some("panic"), None);
    };
    let (kind, setting) = match &outcome.error {
        None => (None, None),
        Some(vramfit::ErrorKind::ModelNotFound) => (Some("model_not_found"), None),
        Some(vramfit::ErrorKind::InvalidSetting { setting }) => {
            (Some("invalid_setting"), Some(setting.clone()))
        }
        Some(vramfit::ErrorKind::Hub) => (Some("hub"), None),
        Some(vramfit::ErrorKind::Header) => (Some("header"), None),
        Some(_) => (Some("other"), None),
    };
    (outcome, kind, setting)
}

/// `run`'s answer: exit code, stdout, stderr, error kind, setting.
type Captured = (u8, String, String, Option<&'static str>, Option<String>);

/// `run_document`'s answer: exit code, the document, stderr, error kind, setting.
type Document<'py> = (u8, Option<Bound<'py, PyAny>>, String, Option<&'static str>, Option<String>);

/// Like `run`, but with `--json` output returned as Python objects (dicts,
/// lists, numbers, strings) built directly from the document, without a
/// round trip through JSON text in Python: `(exit code, document or None,
/// stderr, error kind, setting)`; the document is None when the run printed
/// none (an error, `--help`).
#[pyfunction]
#[pyo3(signature = (argv, config=None))]
fn run_document<'py>(
    py: Python<'py>,
    argv: Vec<String>,
    config: Option<(String, String)>,
) -> PyResult<Document<'py>> {
    let (outcome, kind, setting) = captured(argv, config.as_ref(), true);
    // Exit 3 (`--check`: it does not fit) still carries the document.
    let document = match (&outcome.document, outcome.code) {
        (Some(value), 0 | 3) => Some(to_python(py, value)?),
        _ => None,
    };
    Ok((outcome.code, document, outcome.stderr, kind, setting))
}

/// A JSON value as the Python objects `json.loads` would give.
fn to_python<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, None, Some(f)) => f.into_pyobject(py)?.into_any(),
            (None, None, None) => py.None().into_bound(py),
        },
        Value::String(text) => text.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let items =
                items.iter().map(|item| to_python(py, item)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key_string(py, key), to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// Most keys are the documents' field names, the same in every call: kept as
/// interned Python strings (their hash computed once), up to a bound, so a
/// call does not build and hash them again.
fn key_string<'py>(py: Python<'py>, key: &str) -> Bound<'py, PyString> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    const MAX_KEYS: usize = 4096;
    thread_local! {
        static KEYS: RefCell<HashMap<String, Py<PyString>>> = RefCell::new(HashMap::new());
    }
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some(known) = keys.get(key) {
            return known.bind(py).clone();
        }
        if keys.len() >= MAX_KEYS {
            // Interned strings live for good; past the bound, keys are plain strings.
            return PyString::new(py, key);
        }
        let interned = PyString::intern(py, key);
        keys.insert(key.to_owned(), interned.clone().unbind());
        interned
    })
}

/// The module.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(main, module)?)?;
    module.add_function(wrap_pyfunction!(run, module)?)?;
    module.add_function(wrap_pyfunction!(run_document, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
