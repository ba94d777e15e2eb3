//! Ready-made fixtures for common servers, each a public module of the
//! crate (`testdock::postgres`, `testdock::redis`).

mod fixture;
mod local;
pub mod postgres;
pub mod redis;
