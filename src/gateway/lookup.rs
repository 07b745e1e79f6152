//! Catalog lookup by identifier (UCP catalog lookup capability): many ids
//! at once, each a variant id, a product id or a SKU, and one product in
//! detail. Search is in the gateway root.

use crate::domain::{Error, Product, ProductId, Result, Sku, VariantId};

use super::Gateway;

/// How a requested id resolved to a variant (`input_correlation.json`
/// `match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The id names this variant (a variant id or a SKU).
    Exact,
    /// The id names the product; this variant was picked to represent it.
    Featured,
}

impl Match {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Featured => "featured",
        }
    }
}

/// A product found by a lookup, with the variants the ids resolved to and,
/// for each, which ids did and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupHit {
    pub product: Product,
    pub variants: Vec<(VariantId, Vec<(String, Match)>)>,
}

/// The answer to a lookup: products in the order first asked for, and the
/// positions of ids that matched nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    pub hits: Vec<LookupHit>,
    pub not_found: Vec<usize>,
}

impl Gateway {
    /// Resolves one id: variant id, then product id, then SKU.
    async fn resolve_id(&self, id: &str) -> Result<Option<(Product, VariantId, Match)>> {
        if let Ok(vid) = VariantId::parse(id) {
            if let Some((p, v)) = self.catalog.variant(&vid).await? {
                return Ok(Some((p, v, Match::Exact)));
            }
        }
        if let Ok(pid) = ProductId::parse(id) {
            if let Some(p) = self.catalog.product(&pid).await? {
                // The featured variant: the first one in stock, else the first.
                let featured = p.variants.iter().find(|v| v.stock > 0).or(p.variants.first());
                if let Some(v) = featured.map(|v| v.id.clone()) {
                    return Ok(Some((p, v, Match::Featured)));
                }
            }
        }
        if let Ok(sku) = Sku::parse(id) {
            if let Some((p, v)) = self.catalog.by_sku(&sku).await? {
                return Ok(Some((p, v, Match::Exact)));
            }
        }
        Ok(None)
    }

    /// Looks up many ids at once.
    pub async fn lookup_catalog(&self, ids: &[String]) -> Result<Lookup> {
        let mut out = Lookup::default();
        for (i, id) in ids.iter().enumerate() {
            let Some((product, variant, how)) = self.resolve_id(id).await? else {
                out.not_found.push(i);
                continue;
            };
            let hit = match out.hits.iter().position(|h| h.product.id == product.id) {
                Some(at) => &mut out.hits[at],
                None => {
                    out.hits.push(LookupHit { product, variants: Vec::new() });
                    let last = out.hits.len() - 1;
                    &mut out.hits[last]
                }
            };
            match hit.variants.iter_mut().find(|(v, _)| *v == variant) {
                Some((_, inputs)) => inputs.push((id.clone(), how)),
                None => hit.variants.push((variant, vec![(id.clone(), how)])),
            }
        }
        Ok(out)
    }

    /// One product in detail, by product or variant id (or SKU). A variant
    /// id puts that variant first, as the featured one.
    pub async fn product_detail(&self, id: &str) -> Result<Product> {
        let Some((mut product, variant, how)) = self.resolve_id(id).await? else {
            return Err(Error::not_found(format!("no product or variant {id:?}")));
        };
        if how == Match::Exact {
            if let Some(at) = product.variants.iter().position(|v| v.id == variant) {
                let chosen = product.variants.remove(at);
                product.variants.insert(0, chosen);
            }
        }
        Ok(product)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[tokio::test]
    async fn ids_resolve_by_kind_and_group_by_product() {
        let dir = tempfile::tempdir().unwrap();
        let gw = crate::bootstrap::build(Settings::for_data_dir(dir.path())).await.unwrap().gateway;
        let ids: Vec<String> = [
            "v-linen-camp-shirt-m",
            "p-linen-camp-shirt",
            "LINEN-CAMP-SHIRT-M",
            "nothing-here",
            "p-flannel-overshirt",
            "bad id",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let out = gw.lookup_catalog(&ids).await.unwrap();
        assert_eq!(out.not_found, vec![3, 5]);
        assert_eq!(out.hits.len(), 2);
        let shirt = &out.hits[0];
        let got: Vec<(&str, Vec<(&str, Match)>)> = shirt
            .variants
            .iter()
            .map(|(v, i)| (v.as_str(), i.iter().map(|(id, m)| (id.as_str(), *m)).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "v-linen-camp-shirt-m",
                    vec![
                        ("v-linen-camp-shirt-m", Match::Exact),
                        ("LINEN-CAMP-SHIRT-M", Match::Exact)
                    ]
                ),
                ("v-linen-camp-shirt-s", vec![("p-linen-camp-shirt", Match::Featured)]),
            ]
        );
        // All sold out: the first variant stands for the product.
        assert_eq!(out.hits[1].variants[0].0.as_str(), "v-flannel-overshirt-m");

        let p = gw.product_detail("v-linen-camp-shirt-l").await.unwrap();
        assert_eq!(p.variants[0].id.as_str(), "v-linen-camp-shirt-l");
        let err = gw.product_detail("nope").await.unwrap_err();
        assert_eq!(err.code(), crate::domain::ErrorCode::NotFound);
    }
}
