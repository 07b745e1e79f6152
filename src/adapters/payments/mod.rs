//! Payment processors behind the `Payments` port.

pub mod sandbox;
pub mod stripe;

pub use sandbox::SandboxPayments;
pub use stripe::{StripeOptions, StripePayments};
