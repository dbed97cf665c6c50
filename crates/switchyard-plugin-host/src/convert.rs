//! Conversions between the core's routing types and the wasmtime-generated WIT types.
#![allow(dead_code)]

use crate::bindings::switchyard::router::types as w;

switchyard_core::wit_conversions!();
