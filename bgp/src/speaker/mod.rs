//! The speaker: peers, RIB, import and export, as a sans-IO core with a tokio runtime around it.

pub mod config;
pub mod core;
pub mod policy;
pub mod runtime;
