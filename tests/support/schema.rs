//! JSON Schema validation against the official specs, for tests.
//!
//! The specs stay outside the repository (see [`super::specs_dir`]); this
//! module builds `jsonschema` validators from them without ever touching the
//! network. Every `$ref` is resolved to a file in the same version folder
//! (`<specs>/<family>/<version>/`, e.g. `ucp/2026-04-08`):
//!
//! - `file://` URIs are read directly, but only inside that folder;
//! - `https://ucp.dev/...` URIs are first looked up among the `$id`s of the
//!   folder's files, then mapped by path. The path step is needed because
//!   the published `$id`s do not mirror the file layout: the profile schema
//!   says `$id: https://ucp.dev/schemas/discovery/profile.json` and refers to
//!   `../schemas/ucp.json`, which resolves against that id to
//!   `https://ucp.dev/schemas/schemas/ucp.json`, while the file that carries
//!   `$id: https://ucp.dev/schemas/ucp.json` sits at `schemas/ucp.json`.
//! - anything else is refused, so a typo can never turn into a download.
//!
//! UCP schemas carry `ucp_request` / `ucp_response` annotations that say,
//! per operation, whether a field is required, optional or omitted in a
//! request or a response (UCP 2026-04-08, "Schema Authoring"). A raw schema
//! describes the full resource as a response returns it; to validate a
//! `create_checkout` request body you resolve the annotations for
//! (request, "create") first. [`Resolve`] does that for every file a
//! validator loads, with the same rules as the UCP organisation's
//! `ucp-schema` tool: `omit` removes the property (from `properties` and
//! `required`), `required` adds it to `required`, `optional` removes it from
//! `required`, and an operation the annotation does not name leaves the
//! property as it is.
//!
//! Usage, for a REST operation of the 2026-04-08 OpenAPI document:
//!
//! ```text
//! let specs = support::specs_dir()?;
//! let req = schema::operation_request(&specs, schema::UCP_REST_2026_04_08, "create_checkout");
//! schema::assert_valid(&req, &body, "create_checkout request");
//! let resp = schema::operation_response(&specs, schema::UCP_REST_2026_04_08, "create_checkout", "201");
//! schema::assert_valid(&resp, &response_json, "create_checkout 201");
//! ```
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::{json, Map, Value};

/// The 2026-04-08 REST binding, relative to the specs folder.
pub const UCP_REST_2026_04_08: &str = "ucp/2026-04-08/services/shopping/rest.openapi.json";
/// The 2026-01-11 REST binding, relative to the specs folder.
pub const UCP_REST_2026_01_11: &str = "ucp/2026-01-11/services/shopping/openapi.json";
/// The discovery profile schemas, relative to the specs folder.
pub const UCP_PROFILE_2026_04_08: &str = "ucp/2026-04-08/discovery/profile_schema.json";
pub const UCP_PROFILE_2026_01_11: &str = "ucp/2026-01-11/discovery/profile_schema.json";

/// Which side of an exchange a payload is on, for the `ucp_request` /
/// `ucp_response` annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    fn annotation(self) -> &'static str {
        match self {
            Self::Request => "ucp_request",
            Self::Response => "ucp_response",
        }
    }
}

/// How to treat the UCP visibility annotations while loading schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolve {
    /// Use the schemas as published (annotations are ignored by JSON Schema
    /// as unknown keywords). Right for profiles and full resources.
    Raw,
    /// Resolve the annotations for one direction and operation (`create`,
    /// `update`, `complete`, `read`, `cancel`, ...).
    For(Direction, String),
}

impl Resolve {
    pub fn request(operation: &str) -> Self {
        Self::For(Direction::Request, operation.to_owned())
    }

    pub fn response(operation: &str) -> Self {
        Self::For(Direction::Response, operation.to_owned())
    }
}

/// A validator for a whole schema file, e.g.
/// `validator(&specs, "ucp/2026-04-08/schemas/shopping/checkout.json")`.
pub fn validator(specs: &Path, rel: &str) -> Validator {
    validator_with(specs, rel, "", &Resolve::Raw)
}

/// A validator for the subschema at a JSON pointer inside a file: a `$defs`
/// entry (`"/$defs/business_profile"`) or any other location, such as an
/// OpenAPI operation's body schema. Pointer segments are escaped as RFC 6901
/// says (`/` as `~1`, `~` as `~0`); see [`pointer`].
pub fn validator_at(specs: &Path, rel: &str, pointer: &str) -> Validator {
    validator_with(specs, rel, pointer, &Resolve::Raw)
}

/// The general form: a validator for `pointer` inside `rel`, with the UCP
/// annotations treated as `resolve` says in every file it loads.
pub fn validator_with(specs: &Path, rel: &str, pointer: &str, resolve: &Resolve) -> Validator {
    validator_all_of(specs, &[(rel, pointer)], resolve)
}

/// A validator requiring every listed `(file, pointer)` schema at once
/// (`allOf`). This composes a capability with its negotiated extensions,
/// e.g. checkout plus the discount and fulfillment `$defs` that extend it.
/// All files must be in the same version folder.
pub fn validator_all_of(specs: &Path, parts: &[(&str, &str)], resolve: &Resolve) -> Validator {
    try_validator_all_of(specs, parts, resolve).unwrap_or_else(|e| panic!("{e}"))
}

/// [`validator_all_of`] that reports a schema which cannot be built (an
/// unresolvable `$ref`, a file outside the version folder) instead of
/// panicking.
pub fn try_validator_all_of(
    specs: &Path,
    parts: &[(&str, &str)],
    resolve: &Resolve,
) -> Result<Validator, String> {
    if parts.is_empty() {
        return Err("validator_all_of needs at least one schema".into());
    }
    let mut root: Option<PathBuf> = None;
    let mut refs = Vec::new();
    for (rel, ptr) in parts {
        let (file, version_root) = locate(specs, rel)?;
        match &root {
            Some(r) if r != &version_root => {
                return Err(format!("{rel} is not in the same version folder as {}", r.display()))
            }
            _ => root = Some(version_root),
        }
        refs.push(json!({ "$ref": format!("{}#{}", file_uri(&file)?, encode_fragment(ptr)) }));
    }
    let Some(root) = root else { return Err("no schema given".into()) };
    let mut schema = json!({ "$schema": "https://json-schema.org/draft/2020-12/schema" });
    if let [single] = refs.as_slice() {
        schema["$ref"] = single["$ref"].clone();
    } else {
        schema["allOf"] = Value::Array(refs);
    }
    let retriever = SpecRetriever::new(&root, resolve.clone())?;
    // Every file of the folder goes into the registry up front. Letting the
    // registry crawl from the root instead misses refs below a
    // percent-encoded pointer (OpenAPI paths hold `{id}`), which then fail
    // at compile time; preloading makes the result independent of the crawl.
    let mut documents = Vec::new();
    for file in retriever.files()? {
        documents.push((file_uri(&file)?, retriever.load(&file)?));
    }
    let registry = jsonschema::Registry::new()
        .retriever(retriever.clone())
        .draft(jsonschema::Draft::Draft202012)
        .extend(documents)
        .and_then(|b| b.prepare())
        .map_err(|e| format!("cannot load the schemas of {}: {e}", root.display()))?;
    jsonschema::options()
        .with_registry(&registry)
        .with_retriever(retriever)
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| format!("cannot build a validator for {parts:?}: {e}"))
}

/// The JSON pointer to an OpenAPI operation, found by its `operationId`,
/// e.g. `/paths/~1checkout-sessions~1{id}/put`.
pub fn operation_pointer(specs: &Path, openapi_rel: &str, operation_id: &str) -> String {
    let (file, _) = locate(specs, openapi_rel).unwrap_or_else(|e| panic!("{e}"));
    let doc = read_json(&file).unwrap_or_else(|e| panic!("{e}"));
    let paths = doc["paths"].as_object().unwrap_or_else(|| panic!("{openapi_rel} has no paths"));
    for (path, item) in paths {
        let Some(item) = item.as_object() else { continue };
        for (method, op) in item {
            if op.get("operationId").and_then(Value::as_str) == Some(operation_id) {
                return format!("/paths/{}/{}", escape(path), escape(method));
            }
        }
    }
    panic!("{openapi_rel} has no operation {operation_id:?}");
}

/// The UCP operation name an `operationId` stands for in the visibility
/// annotations: its leading verb, with `get` read as `read`
/// (`create_checkout` -> `create`, `get_order` -> `read`).
pub fn operation_kind(operation_id: &str) -> &str {
    match operation_id.split('_').next().unwrap_or(operation_id) {
        "get" => "read",
        verb => verb,
    }
}

/// A validator for the JSON request body of an OpenAPI operation, with the
/// annotations resolved for (request, [`operation_kind`]).
pub fn operation_request(specs: &Path, openapi_rel: &str, operation_id: &str) -> Validator {
    let op = operation_pointer(specs, openapi_rel, operation_id);
    let ptr = format!("{op}/requestBody/content/application~1json/schema");
    let resolve = Resolve::request(operation_kind(operation_id));
    validator_with(specs, openapi_rel, &ptr, &resolve)
}

/// A validator for the JSON response body of an OpenAPI operation with the
/// given status (`"200"`, `"201"`, ...), with the annotations resolved for
/// (response, [`operation_kind`]).
pub fn operation_response(
    specs: &Path,
    openapi_rel: &str,
    operation_id: &str,
    status: &str,
) -> Validator {
    let op = operation_pointer(specs, openapi_rel, operation_id);
    let ptr = format!("{op}/responses/{}/content/application~1json/schema", escape(status));
    let resolve = Resolve::response(operation_kind(operation_id));
    validator_with(specs, openapi_rel, &ptr, &resolve)
}

/// Builds a JSON pointer from raw segments, escaping each.
pub fn pointer(segments: &[&str]) -> String {
    segments.iter().map(|s| format!("/{}", escape(s))).collect()
}

/// Every validation error, one line each: instance path, then the message,
/// then the schema location that failed. Errors inside `anyOf`/`oneOf`
/// branches are listed too, so a failing branch shows why it failed.
pub fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    let evaluation = validator.evaluate(instance);
    evaluation
        .iter_errors()
        .map(|e| {
            let at = e.instance_location.as_str();
            let at = if at.is_empty() { "(root)" } else { at };
            format!("{at}: {} [schema {}]", e.error, e.schema_location)
        })
        .collect()
}

/// Panics, listing every error with its instance path, unless `instance` is
/// valid. `what` names the payload in the message.
pub fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    if validator.is_valid(instance) {
        return;
    }
    let errs = errors(validator, instance);
    let pretty = serde_json::to_string_pretty(instance).unwrap_or_default();
    panic!(
        "{what} does not match its schema ({} errors):\n  {}\ninstance:\n{pretty}",
        errs.len(),
        errs.join("\n  ")
    );
}

/// Panics unless `instance` is invalid; returns the errors so a test can
/// check that the right rule fired.
pub fn assert_invalid(validator: &Validator, instance: &Value, what: &str) -> Vec<String> {
    assert!(!validator.is_valid(instance), "{what} was expected to fail validation but passed");
    errors(validator, instance)
}

/// Percent-encodes a JSON pointer for use as a URI fragment (RFC 6901
/// section 6): OpenAPI paths carry `{` and `}`, which a URI may not.
fn encode_fragment(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for b in pointer.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Splits `rel` into the file and its version folder (the first two
/// components, e.g. `ucp/2026-04-08`), refusing paths that climb out.
fn locate(specs: &Path, rel: &str) -> Result<(PathBuf, PathBuf), String> {
    let rel_path = Path::new(rel);
    if !rel_path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{rel} must be a plain relative path under the specs folder"));
    }
    let mut comps = rel_path.components();
    let (Some(family), Some(version)) = (comps.next(), comps.next()) else {
        return Err(format!("{rel} must start with <family>/<version>/, e.g. ucp/2026-04-08/"));
    };
    let canonical = |p: PathBuf| p.canonicalize().map_err(|e| format!("{}: {e}", p.display()));
    Ok((canonical(specs.join(rel))?, canonical(specs.join(family).join(version))?))
}

fn file_uri(path: &Path) -> Result<String, String> {
    url::Url::from_file_path(path)
        .map(String::from)
        .map_err(|()| format!("{} is not an absolute path", path.display()))
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            json_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// Resolves references to files of one version folder, applying the
/// annotation resolution to each document it hands out.
#[derive(Clone)]
struct SpecRetriever {
    root: PathBuf,
    /// `$id` (without fragment) to file.
    ids: HashMap<String, PathBuf>,
    resolve: Resolve,
}

impl SpecRetriever {
    fn new(root: &Path, resolve: Resolve) -> Result<Self, String> {
        let mut files = Vec::new();
        json_files(root, &mut files)?;
        let mut ids = HashMap::new();
        for file in files {
            let doc = read_json(&file)?;
            if let Some(id) = doc.get("$id").and_then(Value::as_str) {
                let id = id.trim_end_matches('#').to_owned();
                if let Some(prev) = ids.insert(id.clone(), file.clone()) {
                    return Err(format!(
                        "two files in {} claim $id {id}: {} and {}",
                        root.display(),
                        prev.display(),
                        file.display()
                    ));
                }
            }
        }
        Ok(Self { root: root.to_owned(), ids, resolve })
    }

    fn files(&self) -> Result<Vec<PathBuf>, String> {
        let mut files = Vec::new();
        json_files(&self.root, &mut files)?;
        Ok(files)
    }

    fn file_for(&self, uri: &str) -> Result<PathBuf, String> {
        let url = url::Url::parse(uri).map_err(|e| format!("{uri}: {e}"))?;
        match (url.scheme(), url.host_str()) {
            ("file", _) => {
                let path = url.to_file_path().map_err(|()| format!("{uri} is not a file path"))?;
                let path = path.canonicalize().map_err(|e| format!("{uri}: {e}"))?;
                if path.starts_with(&self.root) {
                    Ok(path)
                } else {
                    Err(format!("{uri} is outside {}", self.root.display()))
                }
            }
            ("https" | "http", Some("ucp.dev")) => {
                let mut bare = url.clone();
                bare.set_fragment(None);
                if let Some(path) = self.ids.get(bare.as_str()) {
                    return Ok(path.clone());
                }
                // Not an `$id`: map the URL path onto the folder, dropping
                // the leading `schemas/` segments that relative refs against
                // mismatched ids pile up.
                let segments: Vec<&str> =
                    url.path_segments().map(|s| s.collect()).unwrap_or_default();
                let rest: Vec<&str> =
                    segments.iter().copied().skip_while(|s| *s == "schemas").collect();
                if rest.iter().any(|s| *s == ".." || s.is_empty()) {
                    return Err(format!("{uri} does not name a file"));
                }
                let rest = rest.join("/");
                for candidate in [self.root.join("schemas").join(&rest), self.root.join(&rest)] {
                    if candidate.is_file() {
                        return Ok(candidate);
                    }
                }
                Err(format!("{uri} maps to no file in {}", self.root.display()))
            }
            _ => Err(format!(
                "{uri}: only ucp.dev ids and local spec files are resolved (no network)"
            )),
        }
    }
}

impl SpecRetriever {
    /// Loads a file and makes it self-consistent with the file layout: its
    /// `$id` becomes its `file://` URI, so relative refs resolve against
    /// the folder they were written in (which is what the authors meant:
    /// `../schemas/ucp.json` from `discovery/`), and absolute
    /// `https://ucp.dev/...` refs become the `file://` URIs of their files.
    /// Mixing both kinds of base URI for one document would make the
    /// registry's crawl and the compiler disagree on where a ref points.
    fn load(&self, path: &Path) -> Result<Value, String> {
        let mut doc = read_json(path)?;
        self.rewrite_refs(&mut doc)?;
        if let Value::Object(map) = &mut doc {
            map.insert("$id".into(), Value::String(file_uri(path)?));
        }
        match &self.resolve {
            Resolve::Raw => Ok(doc),
            Resolve::For(direction, operation) => resolve_annotations(&doc, *direction, operation),
        }
    }

    fn rewrite_refs(&self, value: &mut Value) -> Result<(), String> {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child {
                        Value::String(r) if key == "$ref" && is_ucp_dev(r) => {
                            let (uri, fragment) = r.split_once('#').unwrap_or((r.as_str(), ""));
                            let file = file_uri(&self.file_for(uri)?)?;
                            *r = format!("{file}#{fragment}");
                        }
                        _ => self.rewrite_refs(child)?,
                    }
                }
                Ok(())
            }
            Value::Array(items) => items.iter_mut().try_for_each(|v| self.rewrite_refs(v)),
            _ => Ok(()),
        }
    }
}

fn is_ucp_dev(uri: &str) -> bool {
    uri.starts_with("https://ucp.dev/") || uri.starts_with("http://ucp.dev/")
}

impl Retrieve for SpecRetriever {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.load(&self.file_for(uri.as_str())?)?)
    }
}

/// What an annotation asks of one property for the chosen operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    Keep,
    Omit,
    Required,
    Optional,
}

fn visibility(prop: &Value, direction: Direction, operation: &str) -> Result<Visibility, String> {
    let parse = |s: &str| match s {
        "omit" => Ok(Visibility::Omit),
        "required" => Ok(Visibility::Required),
        "optional" => Ok(Visibility::Optional),
        other => Err(format!("unknown visibility {other:?}")),
    };
    match prop.get(direction.annotation()) {
        None => Ok(Visibility::Keep),
        Some(Value::String(s)) => parse(s),
        Some(Value::Object(by_op)) => match by_op.get(operation) {
            None => Ok(Visibility::Keep),
            Some(Value::String(s)) => parse(s),
            Some(other) => Err(format!("visibility for {operation} is not a string: {other}")),
        },
        Some(other) => {
            Err(format!("{} is neither a string nor an object: {other}", direction.annotation()))
        }
    }
}

/// Rewrites a schema document for one direction and operation, and drops
/// the annotations themselves. Works on the whole document, so `$defs` and
/// composition branches are covered as well.
pub fn resolve_annotations(
    doc: &Value,
    direction: Direction,
    operation: &str,
) -> Result<Value, String> {
    match doc {
        Value::Array(items) => items
            .iter()
            .map(|v| resolve_annotations(v, direction, operation))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::new();
            let mut required: Option<Vec<Value>> =
                map.get("required").and_then(Value::as_array).cloned();
            for (key, value) in map {
                match key.as_str() {
                    "ucp_request" | "ucp_response" => {}
                    "required" if value.is_array() => {}
                    "properties" if value.is_object() => {
                        let mut props = Map::new();
                        for (name, prop) in value.as_object().into_iter().flatten() {
                            let vis = visibility(prop, direction, operation)?;
                            let req = required.get_or_insert_with(Vec::new);
                            match vis {
                                Visibility::Omit => {
                                    req.retain(|r| r != name);
                                    continue;
                                }
                                Visibility::Required => {
                                    if !req.iter().any(|r| r == name) {
                                        req.push(Value::String(name.clone()));
                                    }
                                }
                                Visibility::Optional => req.retain(|r| r != name),
                                Visibility::Keep => {}
                            }
                            props.insert(
                                name.clone(),
                                resolve_annotations(prop, direction, operation)?,
                            );
                        }
                        out.insert(key.clone(), Value::Object(props));
                    }
                    _ => {
                        out.insert(key.clone(), resolve_annotations(value, direction, operation)?);
                    }
                }
            }
            match required {
                Some(req) if !req.is_empty() || map.contains_key("required") => {
                    out.insert("required".into(), Value::Array(req));
                }
                _ => {}
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}
