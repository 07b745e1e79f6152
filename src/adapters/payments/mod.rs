//! Payment processors behind the `Payments` port.

pub mod sandbox;

pub use sandbox::SandboxPayments;
