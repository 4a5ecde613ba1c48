//! How fast the accuracy report's cases are read and estimated:
//! `cargo bench -p vramfit-validation`.

use std::path::Path;

use divan::Bencher;
use vramfit_core::memory::estimate;
use vramfit_core::memory::runtime::{Kernels, Runtime};
use vramfit_validation::parse_measured;

fn main() {
    divan::main();
}

/// Every measured case of the accuracy report, parsed and estimated.
#[divan::bench(sample_count = 20)]
fn accuracy_report_cases(bencher: Bencher) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../validation/data");
    let texts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("oracle-"))
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    bencher.bench(|| {
        let mut total = 0u64;
        for text in &texts {
            let (cases, _) = parse_measured(text, "bench").unwrap();
            for case in cases {
                let kernels = if case.backend == "fake" { Kernels::FakeCpu } else { Kernels::Cpu };
                let runtime = Runtime::HOPPER.with(|r| r.kernels = kernels);
                total += estimate(&case.spec, &case.workload, &runtime).unwrap().tensor_peak_bytes;
            }
        }
        total
    });
}
