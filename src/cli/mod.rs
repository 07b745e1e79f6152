pub mod keys;
pub mod mandate;
