pub mod adapters;
pub mod ap2;
pub mod cli;
pub mod domain;
