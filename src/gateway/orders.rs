//! Orders as their owners see them: one order with its audit trail, and
//! the list operators page through.
//!
//! Orders are written only by the checkout commit (`complete.rs`) and by
//! fulfilment and refund use cases through `Store::update_order`; this
//! module only reads. Someone else's order reads exactly like a missing
//! one, so an order id never confirms that an order exists.

use super::{Caller, Gateway};
use crate::domain::{Error, Order, OrderEvent, OrderId, Result};
use crate::ports::OrderFilter;

/// An order with its append-only events, oldest first.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub order: Order,
    pub events: Vec<OrderEvent>,
}

impl Gateway {
    /// The order `id` with its events, if `caller` may see it.
    pub async fn get_order(&self, caller: &Caller, id: &OrderId) -> Result<OrderView> {
        let order = match self.store.get_order(id).await? {
            Some(v) if caller.may_access(&v.value.owner) => v.value,
            _ => return Err(Error::not_found(format!("order {id} does not exist"))),
        };
        let events = self.store.order_events(id).await?;
        Ok(OrderView { order, events })
    }

    /// Orders matching `filter`, newest first. For operator tools: it
    /// checks no ownership, so no agent-facing transport may expose it
    /// without an operator scope.
    pub async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<Order>> {
        self.store.list_orders(filter).await
    }
}
