//! JSON Schema validation against the AP2 v0.2 schemas, for tests.
//!
//! The AP2 files live in `<specs>/ap2/v0.2/` (`ap2/` for the mandates and
//! receipts, `ucp-types/` for the UCP types they embed) and name each other
//! by `https://ap2-protocol.org/schemas/...` ids. Those ids do not all
//! follow the layout (`types/receipt_status.json` declares
//! `.../receipt-status.json`, and the UCP types are referred to as
//! `types/...` although they sit in `ucp-types/types/`), so unlike the UCP
//! helper in [`super::schema`] this one keeps the published ids: every file
//! is registered under its own `$id`, and any other `ap2-protocol.org` URI
//! is mapped onto the folder by path (`schemas/<rest>` is looked up in
//! `ap2/<rest>`, then `ucp-types/<rest>`). Nothing is fetched: any other
//! host is refused.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::{json, Value};

/// The AP2 v0.2 folder, relative to the specs folder.
pub const AP2_V02: &str = "ap2/v0.2";

const HOST: &str = "ap2-protocol.org";

#[derive(Clone)]
struct Ap2Retriever {
    root: PathBuf,
    by_id: HashMap<String, Value>,
}

impl Ap2Retriever {
    fn new(root: &Path) -> Result<Self, String> {
        let mut files = Vec::new();
        collect(root, &mut files)?;
        let mut by_id = HashMap::new();
        for file in files {
            let doc = read(&file)?;
            let id = doc
                .get("$id")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{} has no $id", file.display()))?
                .trim_end_matches('#')
                .to_owned();
            if by_id.insert(id.clone(), doc).is_some() {
                return Err(format!("two files in {} claim $id {id}", root.display()));
            }
        }
        Ok(Self { root: root.to_owned(), by_id })
    }

    fn find(&self, uri: &str) -> Result<Value, String> {
        let bare = uri.split('#').next().unwrap_or(uri);
        if let Some(doc) = self.by_id.get(bare) {
            return Ok(doc.clone());
        }
        let url = url::Url::parse(bare).map_err(|e| format!("{uri}: {e}"))?;
        if url.host_str() != Some(HOST) {
            return Err(format!("{uri}: only {HOST} ids are resolved (no network)"));
        }
        let rest = url.path().trim_start_matches("/schemas/");
        if rest.split('/').any(|s| s == ".." || s.is_empty()) {
            return Err(format!("{uri} does not name a file"));
        }
        for dir in ["ap2", "ucp-types"] {
            let candidate = self.root.join(dir).join(rest);
            if candidate.is_file() {
                return read(&candidate);
            }
        }
        Err(format!("{uri} maps to no file in {}", self.root.display()))
    }
}

impl Retrieve for Ap2Retriever {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.find(uri.as_str())?)
    }
}

fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// A validator for one AP2 v0.2 schema file, named relative to the
/// version folder: `ap2/checkout_mandate.json`, `ucp-types/types/checkout.json`.
pub fn validator(specs: &Path, file: &str) -> Validator {
    let root = specs.join(AP2_V02);
    let retriever = Ap2Retriever::new(&root).unwrap_or_else(|e| panic!("{e}"));
    let doc = read(&root.join(file)).unwrap_or_else(|e| panic!("{e}"));
    let id = doc["$id"].as_str().unwrap_or_else(|| panic!("{file} has no $id")).to_owned();
    let documents: Vec<(String, Value)> =
        retriever.by_id.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let registry = jsonschema::Registry::new()
        .retriever(retriever.clone())
        .draft(jsonschema::Draft::Draft202012)
        .extend(documents)
        .and_then(|b| b.prepare())
        .unwrap_or_else(|e| panic!("cannot load the AP2 schemas: {e}"));
    jsonschema::options()
        .with_registry(&registry)
        .with_retriever(retriever)
        .should_validate_formats(true)
        .build(&json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": id}))
        .unwrap_or_else(|e| panic!("cannot build a validator for {file}: {e}"))
}
