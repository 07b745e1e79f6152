pub mod ap2;
pub mod domain;
