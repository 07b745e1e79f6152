//! The pure domain core: money, identifiers, catalog entities, carts, the
//! checkout state machine, orders and the error type.
//!
//! Nothing here performs I/O or reads a clock or a random source: time and
//! fresh ids come in as arguments. Domain types derive `Serialize` where an
//! edge needs to show them, but never `Deserialize`; input is parsed into them
//! through constructors and `TryFrom` at the edges.

pub mod cart;
pub mod checkout;
pub mod error;
pub mod ids;
pub mod money;
pub mod order;
pub mod product;

pub use cart::{Cart, CartLine, CartStatus};
pub use checkout::{CheckoutSession, CheckoutStatus, LineItem, Totals};
pub use error::{Error, ErrorCode, Result};
pub use ids::{CartId, CheckoutId, OrderId, ProductId, Sku, VariantId};
pub use money::{Currency, Money};
pub use order::{LedgerEntry, LedgerKind, Order, OrderEvent, OrderEventKind, OrderStatus};
pub use product::{CategoryNode, Product, StockState, Variant};
