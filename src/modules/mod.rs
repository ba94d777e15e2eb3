//! Ready-made fixtures for common servers, each a public module of the
//! crate (`testdock::postgres`, `testdock::mysql`, `testdock::redis`).

mod fixture;
mod local;
pub mod mysql;
mod naming;
pub mod postgres;
pub mod redis;
