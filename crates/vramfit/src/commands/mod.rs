//! One module per subcommand.

pub(crate) mod models;
pub(crate) mod params;
