//! The pure policy core: the checkout guardrail (step 4 of the checkout
//! pipeline) and the platform fee with its ledger rules (step 5).
//!
//! It owns the decisions "may this checkout go ahead, and at what amount"
//! and "what fee does the platform take, and how is it recorded and
//! reversed". It knows nothing of transports, stores, catalogs, clocks or
//! randomness: the pipeline in `gateway.rs` reads those and passes plain
//! values in, and writes what comes back.

pub mod fees;
pub mod guardrail;

pub use fees::{ledger_total, ledger_totals, reversal, FeePolicy};
pub use guardrail::{
    Adjustments, CatalogItem, ClaimedCart, ClaimedLine, GuardrailConfig, GuardrailInput,
    MerchantClaim, Repriced, Rule, Transition, VelocityLimit, Violation,
};
