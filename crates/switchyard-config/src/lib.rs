//! `router.toml`: the typed configuration of a Switchyard router.
//!
//! [`load_file`] / [`parse_str`] read the file, interpolate `${VAR}` and `${VAR:-default}` from the
//! environment, deserialize every section with `deny_unknown_fields`, validate cross references
//! (placements name existing backends and columns, keys exist, ...) and report *all* problems in
//! one [`ConfigError`], each with file, line, column and key path.
//!
//! Invariant: a [`Config`] value returned from this crate has passed validation; the rest of the
//! router never re-checks it.

mod interpolate;
mod load;
mod model;
mod schema;
mod types;

pub use load::{ConfigError, Problem, load_file, parse_str};
pub use model::*;
pub use schema::json_schema;
pub use types::{LogicalType, TypeParseError};
