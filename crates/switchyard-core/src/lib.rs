//! The pure core of Switchyard: catalog, logical types and values, the SQL front-end, the bound
//! logical IR and the default planner.
//!
//! Invariant: nothing in this crate performs I/O, spawns tasks or knows a driver; every function is
//! synchronous and deterministic, so plans can be snapshot-tested from SQL text and a catalog.

pub mod catalog;
pub mod describe;
pub mod error;
pub mod exec;
pub mod ir;
pub mod plan;
pub mod result;
pub mod routing;
pub mod sql;
pub mod value;
mod wit_convert;

pub use catalog::{BackendInfo, Catalog, Column, Placement, Table};
pub use error::{CoreError, ErrorCode, Position};
pub use ir::{BoundQuery, Statement, StatementKind};
pub use plan::{Plan, plan, plan_with_request};
pub use result::{ResultColumn, ResultSet};
pub use routing::{Route, RouteRequest};
pub use switchyard_config::{BackendKind, LogicalType, Role};
pub use value::Value;
