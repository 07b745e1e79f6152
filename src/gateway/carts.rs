//! Cart use cases in the shape of the UCP cart capability: create from a
//! list of items and replace all lines at once (REST `PUT /carts/{id}` is a
//! full replacement). The incremental changes agents make through tools
//! (`CartChange`) live with the other cart use cases in the gateway root.
//!
//! As for checkouts, items that do not exist are a business answer
//! ([`CartOutcome::Rejected`], with messages naming the request field), not
//! an error, and nothing is written.

use crate::domain::checkout::{Message, MessageType, Severity};
use crate::domain::{Cart, CartId, CartLine, ErrorCode, Result, VariantId};
use crate::ports::Versioned;

use super::{Caller, Gateway, ItemInput, CAS_ATTEMPTS};

/// The answer to a cart create or replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartOutcome {
    Cart(Cart),
    /// Nothing was written: some items do not exist.
    Rejected(Vec<Message>),
}

impl Gateway {
    /// Prices every item from the catalog, or says which do not exist.
    async fn priced_items(
        &self,
        items: &[ItemInput],
    ) -> Result<std::result::Result<Vec<CartLine>, Vec<Message>>> {
        let mut lines = Vec::with_capacity(items.len());
        let mut missing = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match self.priced_line(&item.variant, item.quantity).await {
                Ok(line) => lines.push(line),
                Err(e) if e.code() == ErrorCode::NotFound => missing.push(Message {
                    kind: MessageType::Error,
                    code: "item_unavailable".into(),
                    content: format!("item {} does not exist", item.variant),
                    severity: Some(Severity::Unrecoverable),
                    path: Some(format!("$.line_items[{i}].item.id")),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(if missing.is_empty() { Ok(lines) } else { Err(missing) })
    }

    /// Creates a cart holding `items`.
    pub async fn create_cart_with(
        &self,
        caller: &Caller,
        items: &[ItemInput],
    ) -> Result<CartOutcome> {
        if let Err(messages) = self.priced_items(items).await? {
            return Ok(CartOutcome::Rejected(messages));
        }
        let pairs: Vec<(VariantId, u32)> =
            items.iter().map(|i| (i.variant.clone(), i.quantity)).collect();
        Ok(CartOutcome::Cart(self.create_cart(caller, &pairs).await?))
    }

    /// Replaces every line of a cart with `items`, with compare-and-set.
    pub async fn replace_cart(
        &self,
        caller: &Caller,
        id: &CartId,
        items: &[ItemInput],
    ) -> Result<CartOutcome> {
        // Access first, so an unknown cart is not found before any catalog
        // lookup says anything about the items.
        self.load_cart(caller, id).await?;
        let lines = match self.priced_items(items).await? {
            Ok(lines) => lines,
            Err(messages) => return Ok(CartOutcome::Rejected(messages)),
        };
        for _ in 0..CAS_ATTEMPTS {
            let Versioned { value: mut cart, version } = self.load_cart(caller, id).await?;
            let now = self.now();
            cart.clear(now)?;
            for line in &lines {
                cart.add(line.clone(), now)?;
            }
            match self.store.update_cart(&cart, version).await {
                Ok(_) => return Ok(CartOutcome::Cart(cart)),
                Err(e) if e.code() == ErrorCode::VersionConflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(crate::domain::Error::new(
            ErrorCode::VersionConflict,
            "the cart is being changed concurrently; retry",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn item(v: &str, q: u32) -> ItemInput {
        ItemInput { variant: VariantId::parse(v).unwrap(), quantity: q }
    }

    #[tokio::test]
    async fn carts_are_created_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let gw = crate::bootstrap::build(Settings::for_data_dir(dir.path())).await.unwrap().gateway;
        let caller = Caller::subject("agent");
        let CartOutcome::Cart(cart) = gw
            .create_cart_with(
                &caller,
                &[item("v-organic-cotton-tee-black", 1), item("v-organic-cotton-tee-black", 2)],
            )
            .await
            .unwrap()
        else {
            panic!("rejected")
        };
        assert_eq!((cart.lines.len(), cart.lines[0].quantity), (1, 3), "lines merge by variant");
        let CartOutcome::Cart(replaced) = gw
            .replace_cart(&caller, &cart.id, &[item("v-stoneware-coffee-mug-ocean-blue", 4)])
            .await
            .unwrap()
        else {
            panic!("rejected")
        };
        assert_eq!(replaced.lines.len(), 1);
        assert_eq!(replaced.subtotal().unwrap().minor(), 4 * 1600);
        let CartOutcome::Rejected(m) = gw
            .replace_cart(&caller, &cart.id, &[item("v-mug", 1), item("v-nope", 1)])
            .await
            .unwrap()
        else {
            panic!("expected a rejection")
        };
        let paths: Vec<_> = m.iter().filter_map(|m| m.path.as_deref()).collect();
        assert_eq!(paths, ["$.line_items[0].item.id", "$.line_items[1].item.id"]);
        assert_eq!(
            gw.get_cart(&caller, &cart.id).await.unwrap(),
            replaced,
            "a rejection writes nothing"
        );
        let err = gw.replace_cart(&Caller::subject("x"), &cart.id, &[]).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotFound);
    }
}
