//! Catalog costs at 1k, 10k and 100k synthetic products: import, then the
//! searches agents make (one word, two words, a prefix, text with filters,
//! listings by tag and price, a second page) and a SKU lookup. Target:
//! about 1–2 ms for a text search at 100k products. Repeated text searches
//! are served from the ranking cache; the `cold_*` cases give each search a
//! fresh cache, so they measure the ranking itself.
//!
//! `AGENTGATE_BENCH_SIZES=1000,10000` picks other sizes.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate::adapters::catalog_import::synthetic_catalog;
use agentgate::adapters::sqlite::{self, Db, SqliteCatalog};
use agentgate::domain::Sku;
use agentgate::ports::{Catalog, SearchQuery};
use criterion::Criterion;
use tokio::runtime::Runtime;

fn text(t: &str) -> SearchQuery {
    SearchQuery { text: t.to_owned(), ..SearchQuery::default() }
}

fn queries() -> Vec<(&'static str, SearchQuery)> {
    vec![
        ("list_all", SearchQuery::default()),
        ("one_word", text("northwind")),
        ("two_words", text("linen shirt")),
        ("prefix", text("headph")),
        (
            "text_in_category",
            SearchQuery { category: Some("apparel/shoes".into()), ..text("leather") },
        ),
        (
            "text_in_stock_under_50",
            SearchQuery { in_stock_only: true, price_max: Some(5_000), ..text("wireless") },
        ),
        ("list_by_tag", SearchQuery { tags: vec!["waterproof".into()], ..SearchQuery::default() }),
        (
            "list_by_rare_tags",
            SearchQuery { tags: vec!["limited".into(), "wooden".into()], ..SearchQuery::default() },
        ),
        (
            "list_by_price",
            SearchQuery {
                price_min: Some(59_000),
                price_max: Some(60_000),
                ..SearchQuery::default()
            },
        ),
    ]
}

fn sizes() -> Vec<usize> {
    std::env::var("AGENTGATE_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

fn bench_size(c: &mut Criterion, rt: &Runtime, n: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(&dir.path().join("bench.db"), &sqlite::migrations()).expect("open db");
    let catalog = SqliteCatalog::new(Arc::clone(&db));
    let products = synthetic_catalog(n, 1);
    let start = Instant::now();
    rt.block_on(catalog.import(products.clone())).expect("import");
    let first = start.elapsed();
    let start = Instant::now();
    rt.block_on(catalog.import(products)).expect("re-import");
    println!(
        "\nimport of {n} products: {first:.2?}; importing them again: {:.2?}",
        start.elapsed()
    );

    let mut group = c.benchmark_group(format!("catalog_{n}"));
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for (name, query) in queries() {
        group.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(catalog.search(&query)).expect("search")))
        });
    }
    // The same text searches with an empty ranking cache each time (a new
    // catalog handle on the same database): the cost of a query no agent
    // has made since the catalog last changed.
    for (name, query) in queries().into_iter().filter(|(_, q)| !q.text.is_empty()) {
        group.bench_function(format!("cold_{name}"), |b| {
            b.iter(|| {
                let cold = SqliteCatalog::new(Arc::clone(&db));
                black_box(rt.block_on(cold.search(&query)).expect("search"))
            })
        });
    }
    let first_page = rt.block_on(catalog.search(&text("northwind"))).expect("search");
    let second = SearchQuery { cursor: first_page.next_cursor, ..text("northwind") };
    group.bench_function("second_page", |b| {
        b.iter(|| black_box(rt.block_on(catalog.search(&second)).expect("search")))
    });
    let sku = Sku::parse(&format!("SYN{:07}-0", n / 2)).expect("sku");
    group.bench_function("by_sku", |b| {
        b.iter(|| black_box(rt.block_on(catalog.by_sku(&sku)).expect("lookup")))
    });
    group.finish();
}

fn main() {
    let rt = Runtime::new().expect("runtime");
    let mut c = Criterion::default().configure_from_args();
    for n in sizes() {
        bench_size(&mut c, &rt, n);
    }
    c.final_summary();
}
