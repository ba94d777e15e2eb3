//! Ready-made fixtures for common servers, each a public module of the
//! crate (`testdock::postgres`).

pub mod postgres;
