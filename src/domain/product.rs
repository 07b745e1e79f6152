//! Catalog entities: products, their purchasable variants, and the category
//! tree. Stock counts live in the store (they change under concurrent
//! checkouts); a `Variant` carries the count as last read, for display.

use serde::Serialize;

use super::ids::{ProductId, Sku, VariantId};
use super::money::Money;

/// Whether a variant can be bought now, as shown to agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StockState {
    InStock,
    LowStock,
    OutOfStock,
}

impl StockState {
    /// Five or fewer units is "low": agents should not promise more.
    pub const LOW_STOCK_THRESHOLD: u32 = 5;

    pub fn from_quantity(quantity: u32) -> Self {
        match quantity {
            0 => Self::OutOfStock,
            q if q <= Self::LOW_STOCK_THRESHOLD => Self::LowStock,
            _ => Self::InStock,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub id: VariantId,
    pub sku: Sku,
    pub title: String,
    pub price: Money,
    /// Units available when this value was read.
    pub stock: u32,
    /// Physical goods need a fulfillment choice at checkout.
    pub requires_shipping: bool,
}

impl Variant {
    pub fn stock_state(&self) -> StockState {
        StockState::from_quantity(self.stock)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: ProductId,
    /// URL-safe name, unique per catalog (Shopify "handle").
    pub handle: String,
    pub title: String,
    pub description: String,
    /// Slash-separated category path, most general first: `apparel/shoes`.
    pub category: String,
    pub tags: Vec<String>,
    pub image_url: Option<String>,
    pub variants: Vec<Variant>,
}

impl Product {
    pub fn variant(&self, id: &VariantId) -> Option<&Variant> {
        self.variants.iter().find(|v| &v.id == id)
    }

    /// The cheapest variant's price: what a listing shows as "from".
    pub fn min_price(&self) -> Option<Money> {
        self.variants.iter().map(|v| v.price).min_by_key(|m| m.minor())
    }
}

/// A node of the category tree, with product counts that include children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryNode {
    pub name: String,
    pub path: String,
    pub product_count: u64,
    pub children: Vec<CategoryNode>,
}

impl CategoryNode {
    /// Builds the tree from `(path, count)` pairs of leaf categories.
    pub fn build_tree(paths: &[(String, u64)]) -> Vec<CategoryNode> {
        let mut roots: Vec<CategoryNode> = Vec::new();
        for (path, count) in paths {
            let mut level = &mut roots;
            let mut prefix = String::new();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                let idx = match level.iter().position(|n| n.name == part) {
                    Some(i) => i,
                    None => {
                        level.push(CategoryNode {
                            name: part.to_owned(),
                            path: prefix.clone(),
                            product_count: 0,
                            children: Vec::new(),
                        });
                        level.len() - 1
                    }
                };
                level[idx].product_count += count;
                level = &mut level[idx].children;
            }
        }
        fn sort(nodes: &mut [CategoryNode]) {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            for n in nodes {
                sort(&mut n.children);
            }
        }
        sort(&mut roots);
        roots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_states() {
        assert_eq!(StockState::from_quantity(0), StockState::OutOfStock);
        assert_eq!(StockState::from_quantity(5), StockState::LowStock);
        assert_eq!(StockState::from_quantity(6), StockState::InStock);
    }

    #[test]
    fn category_tree_sums_children() {
        let tree = CategoryNode::build_tree(&[
            ("apparel/shoes".into(), 3),
            ("apparel/shirts".into(), 2),
            ("home".into(), 4),
        ]);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].name, "apparel");
        assert_eq!(tree[0].product_count, 5);
        assert_eq!(tree[0].children[0].path, "apparel/shirts");
        assert_eq!(tree[1].product_count, 4);
    }
}
