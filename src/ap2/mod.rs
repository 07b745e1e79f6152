//! AP2 v0.1 mandates: ES256 JWS, keys, the three-mandate chain and its
//! verifier.
//!
//! This is pure core: no file, network or clock access. Time, randomness and
//! keys come in as arguments; the only state is what the caller passes. The
//! merchant's private key never leaves [`keys`]. Wire formats are documented
//! in `docs/mandates.md`.

pub mod jws;
pub mod keys;
