//! The one access table: every operation any transport offers, what budget
//! it spends and what a caller must present to run it.
//!
//! The HTTP edge maps routes to an [`Operation`], the MCP edge maps tool
//! names to one; both then ask this table, so REST and MCP cannot drift
//! apart on who may do what.

use super::rate_limit::ToolClass;

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

    /// The operation behind a tool of `/mcp` or `/ucp/mcp`, by name.
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
