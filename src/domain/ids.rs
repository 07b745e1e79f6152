//! Identifier newtypes, parsed at the edge.
//!
//! Catalog ids (`Sku`, `ProductId`, `VariantId`) come from merchants and
//! backends, so they accept a conservative character set wide enough for
//! Shopify GIDs (`gid://shopify/ProductVariant/42`) to map losslessly.
//! Session ids (`CartId`, `CheckoutId`, `OrderId`) are minted by the gateway
//! with a type prefix, so an id of one kind is never accepted as another.

use std::fmt;

use super::error::{Error, Result};

const MAX_ID_LEN: usize = 128;

fn valid_catalog_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/')
}

fn check_catalog_id(kind: &str, raw: &str) -> Result<()> {
    if raw.is_empty() || raw.len() > MAX_ID_LEN {
        return Err(Error::invalid(format!("{kind} must be 1 to {MAX_ID_LEN} characters")));
    }
    if !raw.chars().all(valid_catalog_char) {
        return Err(Error::invalid(format!(
            "{kind} may contain only letters, digits and - _ . : /"
        )));
    }
    Ok(())
}

macro_rules! catalog_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self> {
                check_catalog_id($kind, raw)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

catalog_id!(
    /// A stock-keeping unit: the key stock is counted under.
    Sku,
    "sku"
);
catalog_id!(
    /// A product (a family of variants).
    ProductId,
    "product id"
);
catalog_id!(
    /// One purchasable variant of a product; carts and checkouts hold these.
    VariantId,
    "variant id"
);

macro_rules! session_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Mints a new id from 16 random bytes (a UUIDv7, so ids sort by
            /// creation time, which keeps store indexes local).
            pub fn from_uuid(uuid: uuid::Uuid) -> Self {
                Self(format!("{}{}", $prefix, uuid.simple()))
            }

            pub fn parse(raw: &str) -> Result<Self> {
                let rest = raw.strip_prefix($prefix).ok_or_else(|| {
                    Error::invalid(format!("{} must start with {:?}", stringify!($name), $prefix))
                })?;
                if rest.is_empty()
                    || rest.len() > 64
                    || !rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(Error::invalid(format!("malformed {}", stringify!($name))));
                }
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

session_id!(
    /// A cart the agent builds before checkout.
    CartId,
    "cart_"
);
session_id!(
    /// A UCP checkout session.
    CheckoutId,
    "chk_"
);
session_id!(
    /// A placed order.
    OrderId,
    "ord_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_ids_accept_shopify_gids_and_refuse_junk() {
        assert!(VariantId::parse("gid://shopify/ProductVariant/4242").is_ok());
        assert!(Sku::parse("TSHIRT-RED-M").is_ok());
        for bad in ["", "a b", "x\u{0}", "<script>", &"a".repeat(129)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_ids_carry_their_kind() {
        let id = CheckoutId::from_uuid(uuid::Uuid::nil());
        assert!(id.as_str().starts_with("chk_"));
        assert_eq!(CheckoutId::parse(id.as_str()).unwrap(), id);
        assert!(OrderId::parse(id.as_str()).is_err(), "a checkout id is not an order id");
        for bad in ["chk_", "chk_a b", "chk_../../etc", "cart_abc"] {
            assert!(CheckoutId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
