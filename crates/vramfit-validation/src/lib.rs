/*!
Where vramfit's validation meets its code: the measured peaks of
`validation/data` (written by the measurement harness, `validation/measure.py`,
and the shared oracle) read into the spec and workload the estimator takes, so
an estimate can be compared with what PyTorch really allocated.

The CLI's `vramfit accuracy` and the accuracy gate of the test suite
(`tests/accuracy.rs`) are its users. It reads files the repository ships, so it
is not published.
*/

pub mod measured;

pub use measured::{Measured, MeasuredCase, parse_measured};
