//! One module per subcommand.

pub(crate) mod accuracy;
pub(crate) mod estimate;
pub(crate) mod fit;
pub(crate) mod gpus;
pub(crate) mod inspect;
pub(crate) mod models;
pub(crate) mod params;
pub(crate) mod rules;
