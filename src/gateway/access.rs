//! The one access table: every operation any transport offers, what budget
//! it spends and what a caller must present to run it.
//!
//! The HTTP edge maps routes to an [`Operation`], the MCP edge maps tool
//! names to one; both then ask this table, so REST and MCP cannot drift
//! apart on who may do what.

use super::rate_limit::ToolClass;
use super::{Caller, Tier};
use crate::domain::{Error, ErrorCode};
use crate::settings::AuthMode;

/// What a caller must present for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: anonymous callers are welcome.
    Anyone,
    /// An API key, a signed agent or a token.
    Identified,
    /// A token (or key) granting this scope.
    Scope(&'static str),
}

pub const SCOPE_CHECKOUT_COMPLETE: &str = "checkout:complete";
pub const SCOPE_ORDERS_READ: &str = "orders:read";
pub const SCOPE_ADMIN: &str = "admin";
/// Every scope the gateway knows, for the protected-resource metadata.
pub const SCOPES: [&str; 3] = [SCOPE_CHECKOUT_COMPLETE, SCOPE_ORDERS_READ, SCOPE_ADMIN];

/// Decides whether `caller` may run `op`. A caller that proved nothing
/// gets `unauthorized` (401: authenticate), one that proved too little
/// gets `insufficient_scope` (403) for a scope or `unauthorized` for a
/// higher tier. In open mode only operator tools are guarded, since they
/// act on every customer's data.
pub fn authorize(caller: &Caller, op: Operation, mode: AuthMode) -> Result<(), Error> {
    if mode == AuthMode::Open && op != Operation::Operator {
        return Ok(());
    }
    match op.requirement() {
        Requirement::Anyone => Ok(()),
        Requirement::Identified if caller.tier > Tier::Anonymous => Ok(()),
        Requirement::Identified => Err(Error::new(
            ErrorCode::Unauthorized,
            "this operation needs an API key, a signed agent profile or a bearer token",
        )),
        Requirement::Scope(s) if caller.has_scope(s) => Ok(()),
        Requirement::Scope(s) if caller.tier == Tier::Anonymous => Err(Error::new(
            ErrorCode::Unauthorized,
            format!("this operation needs a bearer token with the `{s}` scope"),
        )),
        Requirement::Scope(s) => Err(Error::new(
            ErrorCode::InsufficientScope,
            format!("this operation needs the `{s}` scope"),
        )),
    }
}

/// What a caller asks the gateway to do, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Catalog searches, lookups and product reads.
    CatalogRead,
    /// Reading a cart.
    CartRead,
    /// Creating, changing or cancelling a cart.
    CartWrite,
    /// Reading a checkout session.
    CheckoutRead,
    /// Creating, updating or cancelling a checkout session.
    CheckoutWrite,
    /// Completing a checkout: payment.
    CheckoutComplete,
    /// Reading an order.
    OrderRead,
    /// Operator tools and admin endpoints.
    Operator,
}

impl Operation {
    /// The rate-limit budget the operation spends.
    pub fn class(self) -> ToolClass {
        match self {
            Self::CatalogRead | Self::CartRead | Self::CheckoutRead | Self::OrderRead => {
                ToolClass::Catalog
            }
            Self::CartWrite => ToolClass::Cart,
            Self::CheckoutWrite => ToolClass::CheckoutWrite,
            Self::CheckoutComplete => ToolClass::CheckoutComplete,
            // Operators are few and trusted; their calls share the cheap
            // budget so a runaway script still meets a limit.
            Self::Operator => ToolClass::Catalog,
        }
    }

    /// What a caller must present to run the operation (enforced mode).
    pub fn requirement(self) -> Requirement {
        match self {
            Self::CatalogRead | Self::CartRead | Self::CartWrite => Requirement::Anyone,
            Self::CheckoutRead | Self::CheckoutWrite => Requirement::Identified,
            Self::CheckoutComplete => Requirement::Scope(SCOPE_CHECKOUT_COMPLETE),
            Self::OrderRead => Requirement::Scope(SCOPE_ORDERS_READ),
            Self::Operator => Requirement::Scope(SCOPE_ADMIN),
        }
    }

    /// The operation behind a tool of `/mcp`, `/ucp/mcp` or `/admin/mcp`,
    /// by name.
    pub fn of_tool(name: &str) -> Option<Self> {
        Some(match name {
            "scout_inventory" | "search_catalog" | "lookup_catalog" | "get_product" => {
                Self::CatalogRead
            }
            "get_cart" => Self::CartRead,
            "manage_cart" | "create_cart" | "update_cart" | "cancel_cart" => Self::CartWrite,
            "get_checkout" => Self::CheckoutRead,
            "negotiate_terms" | "create_checkout" | "update_checkout" | "cancel_checkout" => {
                Self::CheckoutWrite
            }
            "execute_checkout" | "complete_checkout" => Self::CheckoutComplete,
            "track_order" | "get_order" => Self::OrderRead,
            // The operator tools of `/admin/mcp`.
            "adjust_stock"
            | "list_orders"
            | "refund_order"
            | "fee_report"
            | "pending_escalations" => Self::Operator,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_spends_stricter_budgets_than_browsing() {
        assert_eq!(
            Operation::of_tool("scout_inventory").map(Operation::class),
            Some(ToolClass::Catalog)
        );
        assert_eq!(
            Operation::of_tool("complete_checkout").map(Operation::class),
            Some(ToolClass::CheckoutComplete)
        );
        assert_eq!(Operation::of_tool("no_such_tool"), None);
    }
}
