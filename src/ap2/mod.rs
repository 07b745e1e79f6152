//! AP2 mandates: ES256 JWS, keys, the v0.1 three-mandate chain and its
//! verifier, and v0.2 (SD-JWT chains in `sdjwt`, the checkout and payment
//! mandates in `v02`).
//!
//! This is pure core: no file, network or clock access. Time, randomness and
//! keys come in as arguments; the only state is what the caller passes. The
//! merchant's private key never leaves [`keys`]. Wire formats are documented
//! in `docs/mandates.md`.
//!
//! What the gateway calls:
//! - [`KeyRing`] (loaded by `adapters::keyfile`) for [`KeyRing::jwks`] and
//!   [`KeyRing::signer`];
//! - [`sign_cart_mandate`] when a checkout becomes ready;
//! - [`PublicKeySet::from_jwks_value`] on the agent profile's `signing_keys`;
//! - [`verify_chain`] then [`reserve_mandate_ids`] on complete (v0.1);
//! - [`v02::authorize_checkout`] for every response of a locked checkout,
//!   then [`v02::verify_mandates`] and [`v02::reserve`] on complete (v0.2).

pub mod jws;
pub mod keys;
pub mod mandates;
pub mod sdjwt;
pub mod v02;
pub mod verify;

pub use jws::Es256Signer;
pub use keys::{KeyRing, PrivateKey, PublicKey, PublicKeySet};
pub use mandates::{
    sign_cart_mandate, Amount, CartClaims, CartContents, CartLine, CartMandateRequest,
    IntentClaims, PaymentClaims, MANDATE_TYP,
};
pub use verify::{
    reserve_mandate_ids, verify_chain, verify_chain_report, verify_intent, ChainInput, ChainReport,
    ClockSkew, MandateIdReserver, MerchantIdentity, VerifiedChain, VerifyPolicy,
};
