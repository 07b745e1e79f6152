//! Keeps tool input schemas flat and simple.
//!
//! Models fill tool arguments from the input schema, and several clients
//! handle anything beyond plain typed properties poorly: `"type": ["string",
//! "null"]` (what `Option<T>` produces) and `$ref`s into `$defs`. Every
//! input struct therefore carries `#[schemars(transform = flat_input)]`,
//! which turns optional properties into their plain type (leaving them out
//! of `required` is what makes them optional) and refuses nothing: serde
//! still accepts an explicit `null`, so a client that sends one is not
//! punished.

use schemars::Schema;
use serde_json::Value;

/// Rewrites `type: [T, "null"]` into `type: T` on every property, drops
/// `null` from enums, and turns `anyOf: [S, {type: null}]` into `S`; joins the lines of descriptions
/// (doc comments wrap at 100 columns, which means nothing to a model).
pub fn flat_input(schema: &mut Schema) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for property in properties.values_mut() {
        drop_null(property);
        if let Some(Value::String(text)) = property.get_mut("description") {
            *text = text.replace('\n', " ");
        }
    }
}

fn drop_null(property: &mut Value) {
    let Some(object) = property.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            object.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(values)) = object.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    let single = match object.get("anyOf") {
        Some(Value::Array(options)) => {
            let rest: Vec<&Value> = options.iter().filter(|o| !is_null_schema(o)).collect();
            match rest.as_slice() {
                [one] if rest.len() < options.len() => Some((*one).clone()),
                _ => None,
            }
        }
        _ => None,
    };
    if let (Some(Value::Object(inner)), Some(_)) = (single, object.remove("anyOf")) {
        for (k, v) in inner {
            object.entry(k).or_insert(v);
        }
    }
    if object.get("default") == Some(&Value::Null) {
        object.remove("default");
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

/// schemars marks integers with Rust's width (`"format": "uint32"`), which
/// is not a JSON Schema format: validators such as Ajv warn about it or, in
/// strict mode, refuse the whole schema. The width is already expressed by
/// `minimum`/`maximum` where it matters, so these formats are dropped from
/// every input and output schema of `router`.
pub fn tidy_router<S>(router: &mut rmcp::handler::server::router::tool::ToolRouter<S>) {
    for route in router.map.values_mut() {
        let tool = &mut route.attr;
        let mut input = tool.input_schema.as_ref().clone();
        strip_rust_formats(&mut input);
        tool.input_schema = std::sync::Arc::new(input);
        if let Some(output) = &tool.output_schema {
            let mut output = output.as_ref().clone();
            strip_rust_formats(&mut output);
            tool.output_schema = Some(std::sync::Arc::new(output));
        }
    }
}

const RUST_FORMATS: [&str; 12] = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "uint", "int",
    "float", "double",
];

fn strip_rust_formats(object: &mut serde_json::Map<String, Value>) {
    if object.get("format").and_then(Value::as_str).is_some_and(|f| RUST_FORMATS.contains(&f)) {
        object.remove("format");
    }
    for value in object.values_mut() {
        match value {
            Value::Object(inner) => strip_rust_formats(inner),
            Value::Array(items) => {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    strip_rust_formats(item);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;

    #[derive(serde::Deserialize, JsonSchema)]
    #[schemars(transform = flat_input)]
    #[allow(dead_code)]
    struct Args {
        /// Required text.
        name: String,
        /// Optional number.
        limit: Option<u32>,
        /// Optional list.
        tags: Option<Vec<String>>,
        /// Optional enum.
        mode: Option<Mode>,
    }

    #[derive(serde::Deserialize, JsonSchema)]
    #[schemars(inline)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Mode {
        Fast,
        Slow,
    }

    #[test]
    fn optional_properties_lose_null_and_stay_out_of_required() {
        let schema = serde_json::to_value(schemars::schema_for!(Args)).unwrap();
        let text = schema.to_string();
        assert!(!text.contains("\"null\""), "no null types: {text}");
        assert!(!text.contains("$ref"), "no refs: {text}");
        assert_eq!(schema["properties"]["limit"]["type"], "integer");
        assert_eq!(schema["properties"]["tags"]["type"], "array");
        assert_eq!(schema["properties"]["mode"]["enum"], serde_json::json!(["fast", "slow"]));
        assert_eq!(schema["properties"]["name"]["description"], "Required text.");
        assert_eq!(schema["required"], serde_json::json!(["name"]));
    }

    #[test]
    fn rust_integer_formats_are_dropped_everywhere() {
        let mut schema = serde_json::json!({
            "format": "uint64",
            "properties": {
                "a": {"type": "integer", "format": "int64"},
                "b": {"type": "string", "format": "date-time"},
                "c": {"anyOf": [{"type": "integer", "format": "uint32"}]}
            }
        });
        if let Some(object) = schema.as_object_mut() {
            strip_rust_formats(object);
        }
        assert!(!schema.to_string().contains("int64"), "{schema}");
        assert!(!schema.to_string().contains("uint"), "{schema}");
        assert_eq!(schema["properties"]["b"]["format"], "date-time", "real formats stay");
    }

    #[test]
    fn an_explicit_null_is_still_accepted() {
        let args: Args = serde_json::from_value(serde_json::json!({"name": "x", "limit": null}))
            .unwrap_or_else(|e| panic!("null must deserialize: {e}"));
        assert!(args.limit.is_none());
    }
}
