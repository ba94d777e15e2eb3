//! Ready-made fixtures for common servers, each a public module of the
//! crate (`testdock::postgres`, `testdock::mysql`).

pub mod mysql;
mod naming;
pub mod postgres;
mod unit;
