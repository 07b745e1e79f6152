//! The UCP MCP binding at `/ucp/mcp`: the thirteen tools of the UCP
//! shopping service's OpenRPC document (`services/shopping/
//! mcp.openrpc.json`, 2026-04-08), each taking `meta` (`ucp-agent.profile`,
//! `idempotency-key`) plus an `id` and/or a payload (`checkout`, `cart`,
//! `catalog`), and answering with the UCP wire shapes in
//! `structuredContent`.
//!
//! Each tool runs the same `Gateway` use case and the same wire types as
//! the REST binding (`http/ucp_rest.rs`), with the same rules, so a
//! platform sees one business whichever binding it speaks:
//! - Every call is negotiated with the platform named in
//!   `meta["ucp-agent"].profile`; without one, as if the platform had
//!   declared the business profile (full capability set, 2026-04-08).
//! - The caller is the platform, by its profile URL, unless the transport
//!   authenticated someone; a session created by one platform reads as not
//!   found for another.
//! - `idempotency-key` is required where the OpenRPC requires it
//!   (complete and cancel) and honoured wherever it is given; keyed calls
//!   run once through [`Gateway::idempotent`].
//! - A result is the resource (business problems among its `messages`), or
//!   a UCP `error_response` (`{ucp: {version, status: "error"},
//!   messages}`) with `isError: true`: unknown or foreign resources, bad
//!   payloads, failed negotiation, refused completions.
//!
//! Payloads are UCP objects, so these tools take nested arguments by
//! definition; the input schemas describe `meta` in full and point at the
//! UCP schema for each payload.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::handler::server::router::tool::{ToolRoute, ToolRouter};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};
use url::Url;

use super::{run_tool, server_config, supports_cache_hints, Edge, PROTOCOL_VERSIONS};
use crate::domain::checkout::{Message, MessageType, Severity};
use crate::domain::{CartId, CheckoutId, CheckoutSession, Error, ErrorCode, OrderId, Result};
use crate::gateway::idempotency::fingerprint;
use crate::gateway::{
    Caller, CartOutcome, CheckoutContext, CheckoutOutcome, CompleteRequest, Completion,
    Disposition, Gateway, IdempotencyKey, RenderResponse,
};
use crate::ports::{SearchQuery, StoredResponse};
use crate::ucp::negotiate::{self, Negotiated, Resource, SchemeRule};
use crate::ucp::profile::{CART, CATALOG_LOOKUP, CATALOG_SEARCH, CHECKOUT, ORDER};
use crate::ucp::wire::{self, v2026_01_11, v2026_04_08, CompletionRequest, WireVersion};

/// Idempotency keys of this binding are scoped apart from REST's and the
/// gateway tools'.
const TRANSPORT: &str = "ucp-mcp";

#[derive(Clone)]
pub struct UcpServer {
    edge: Arc<Edge>,
    tools: Arc<ToolRouter<Self>>,
}

impl UcpServer {
    pub fn new(edge: Arc<Edge>) -> Self {
        Self { edge, tools: Arc::new(router()) }
    }

    pub fn tools(&self) -> Vec<Tool> {
        self.tools.list_all()
    }

    fn gateway(&self) -> &Gateway {
        &self.edge.gateway
    }
}

// ---- Tool definitions ------------------------------------------------------------

/// Whether a tool needs `meta["idempotency-key"]`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Required,
    Optional,
    None,
}

/// The shape of one tool: its payload member and what it reads.
struct Spec {
    name: &'static str,
    description: &'static str,
    id: bool,
    payload: Option<(&'static str, &'static str)>,
    key: Key,
    annotations: (bool, bool, bool, bool),
}

const SPECS: &[Spec] = &[
    Spec {
        name: "create_checkout",
        description: "Create a UCP checkout session from line items (or a cart_id). Business \
problems (out of stock, missing buyer details) come back as messages on the session.",
        id: false,
        payload: Some(("checkout", "schemas/shopping/checkout.json (create)")),
        key: Key::Optional,
        annotations: (false, false, false, false),
    },
    Spec {
        name: "get_checkout",
        description: "Read a checkout session, re-priced from the catalog.",
        id: true,
        payload: None,
        key: Key::None,
        annotations: (true, false, true, false),
    },
    Spec {
        name: "update_checkout",
        description: "Replace a checkout session's contents (full replacement, as UCP update): \
line items always, buyer, fulfillment, discounts and payment when given.",
        id: true,
        payload: Some(("checkout", "schemas/shopping/checkout.json (update)")),
        key: Key::Optional,
        annotations: (false, false, true, false),
    },
    Spec {
        name: "complete_checkout",
        description: "Complete a ready_for_complete checkout: the payment instrument (or AP2 \
mandates) in checkout.payment / checkout.ap2, charged once per idempotency-key.",
        id: true,
        payload: Some(("checkout", "schemas/shopping/checkout.json (complete)")),
        key: Key::Required,
        annotations: (false, true, true, true),
    },
    Spec {
        name: "cancel_checkout",
        description: "Cancel a checkout session that is not yet completed.",
        id: true,
        payload: None,
        key: Key::Required,
        annotations: (false, true, true, false),
    },
    Spec {
        name: "create_cart",
        description: "Create a UCP cart from line items.",
        id: false,
        payload: Some(("cart", "schemas/shopping/cart.json (create)")),
        key: Key::Optional,
        annotations: (false, false, false, false),
    },
    Spec {
        name: "get_cart",
        description: "Read a cart, re-priced from the catalog.",
        id: true,
        payload: None,
        key: Key::None,
        annotations: (true, false, true, false),
    },
    Spec {
        name: "update_cart",
        description: "Replace a cart's line items.",
        id: true,
        payload: Some(("cart", "schemas/shopping/cart.json (update)")),
        key: Key::Optional,
        annotations: (false, false, true, false),
    },
    Spec {
        name: "cancel_cart",
        description: "Cancel a cart.",
        id: true,
        payload: None,
        key: Key::Required,
        annotations: (false, true, true, false),
    },
    Spec {
        name: "search_catalog",
        description: "Search the catalog: query, filters (categories, price) and pagination.",
        id: false,
        payload: Some(("catalog", "schemas/shopping/catalog_search.json#/$defs/search_request")),
        key: Key::None,
        annotations: (true, false, true, false),
    },
    Spec {
        name: "lookup_catalog",
        description: "Look products up by ids (product ids, variant ids or SKUs).",
        id: false,
        payload: Some(("catalog", "schemas/shopping/catalog_lookup.json#/$defs/lookup_request")),
        key: Key::None,
        annotations: (true, false, true, false),
    },
    Spec {
        name: "get_product",
        description: "One product with all its variants.",
        id: false,
        payload: Some((
            "catalog",
            "schemas/shopping/catalog_lookup.json#/$defs/get_product_request",
        )),
        key: Key::None,
        annotations: (true, false, true, false),
    },
    Spec {
        name: "get_order",
        description: "Read an order placed through this business.",
        id: true,
        payload: None,
        key: Key::None,
        annotations: (true, false, true, false),
    },
];

fn input_schema(spec: &Spec) -> Arc<JsonObject> {
    let mut meta_required = vec!["ucp-agent"];
    if spec.key == Key::Required {
        meta_required.push("idempotency-key");
    }
    let mut properties = serde_json::Map::new();
    properties.insert(
        "meta".into(),
        json!({
            "type": "object",
            "description": "Request metadata (UCP MCP binding).",
            "additionalProperties": true,
            "required": meta_required,
            "properties": {
                "ucp-agent": {
                    "type": "object",
                    "description": "The platform agent; maps to the HTTP UCP-Agent header.",
                    "required": ["profile"],
                    "properties": {
                        "profile": {
                            "type": "string",
                            "format": "uri",
                            "description": "URL of the platform's UCP profile document."
                        }
                    }
                },
                "idempotency-key": {
                    "type": "string",
                    "description": "Unique key for retry safety (a UUID); maps to the HTTP \
        Idempotency-Key header."
                }
            }
        }),
    );
    let mut required = vec!["meta"];
    if spec.id {
        properties
            .insert("id".into(), json!({"type": "string", "description": "The resource id."}));
        required.push("id");
    }
    if let Some((member, schema)) = spec.payload {
        properties.insert(
            member.into(),
            json!({
                "type": "object",
                "description": format!("The UCP payload, as in the UCP 2026-04-08 {schema}."),
            }),
        );
        required.push(member);
    }
    let schema = json!({"type": "object", "properties": properties, "required": required});
    Arc::new(schema.as_object().cloned().unwrap_or_default())
}

fn tool(spec: &Spec) -> Tool {
    let (read_only, destructive, idempotent, open_world) = spec.annotations;
    Tool::new_with_raw(spec.name, Some(Cow::Borrowed(spec.description)), input_schema(spec))
        .with_annotations(ToolAnnotations::from_raw(
            None,
            Some(read_only),
            Some(destructive),
            Some(idempotent),
            Some(open_world),
        ))
}

/// Builds the router: every tool runs [`UcpServer::call`] with its name.
fn router() -> ToolRouter<UcpServer> {
    let mut router = ToolRouter::new();
    for spec in SPECS {
        let name = spec.name;
        router.add_route(ToolRoute::new_dyn(
            tool(spec),
            move |ctx: ToolCallContext<'_, UcpServer>| {
                let server = ctx.service.clone();
                let caller = super::caller::from_context(&ctx.request_context);
                let args = ctx.arguments.clone().unwrap_or_default();
                Box::pin(async move { Ok(server.call(name, &caller, args).await.into()) })
            },
        ));
    }
    router
}

// ---- Negotiation and results -----------------------------------------------------

/// One call's negotiated protocol and who is asking.
struct Ucp {
    negotiated: Negotiated,
    caller: Caller,
    profile: Option<Url>,
}

impl Ucp {
    fn version(&self) -> WireVersion {
        WireVersion::of(self.negotiated.version())
    }

    fn active(&self) -> Vec<String> {
        self.negotiated.capabilities().iter().map(|c| c.name.clone()).collect()
    }

    fn names(&self, resource: Resource) -> Vec<String> {
        self.negotiated.relevant(resource).iter().map(|c| c.name.clone()).collect()
    }
}

/// A failed call before or around a use case: an `error_response` carrying
/// the error's code, as a tool error.
fn failure(version: WireVersion, e: &Error) -> StoredResponse {
    stored(e.code().http_status(), &wire::error_response(version, &[wire::error_message(e)], None))
}

fn stored(status: u16, body: &Value) -> StoredResponse {
    StoredResponse { status, body: serde_json::to_vec(body).unwrap_or_default() }
}

fn body_of<T: serde::Serialize>(version: WireVersion, status: u16, value: &T) -> StoredResponse {
    match wire::to_body(value) {
        Ok(body) => StoredResponse { status, body },
        Err(e) => failure(version, &e),
    }
}

/// The tool result for a stored answer: the UCP body as structured
/// content, an error when it is an `error_response` or a failure status.
fn result(r: &StoredResponse) -> CallToolResult {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let is_error = r.status >= 400 || body["ucp"]["status"] == "error";
    if is_error {
        CallToolResult::structured_error(body)
    } else {
        CallToolResult::structured(body)
    }
}

fn incompatible(ucp: &Ucp, capability: &str) -> StoredResponse {
    let message = Message {
        kind: MessageType::Error,
        code: "capabilities_incompatible".into(),
        content: format!(
            "{capability} is not among the capabilities negotiated with this platform"
        ),
        severity: Some(Severity::Unrecoverable),
        path: None,
    };
    stored(200, &wire::error_response(ucp.version(), &[message], None))
}

fn not_found_id<T>(kind: &str, raw: &str, parse: impl Fn(&str) -> Result<T>) -> Result<T> {
    // A malformed id cannot name a resource: the same answer as an unknown
    // one.
    parse(raw).map_err(|_| Error::not_found(format!("{kind} {raw} does not exist")))
}

/// The arguments of one call.
struct Args {
    meta: Value,
    id: Option<String>,
    payload: Value,
}

impl Args {
    fn parse(spec: &Spec, mut raw: JsonObject) -> Result<Self> {
        let meta = raw.remove("meta").unwrap_or(Value::Null);
        if !(meta.is_object() || meta.is_null()) {
            return Err(Error::invalid("meta must be an object"));
        }
        let id = match raw.remove("id") {
            None if spec.id => return Err(Error::invalid("id is required")),
            None => None,
            Some(Value::String(s)) if spec.id => Some(s),
            Some(_) if spec.id => return Err(Error::invalid("id must be a string")),
            Some(_) => return Err(Error::invalid("this operation takes no id")),
        };
        let payload = match spec.payload {
            Some((member, _)) => match raw.remove(member) {
                Some(v @ Value::Object(_)) => v,
                Some(_) => return Err(Error::invalid(format!("{member} must be an object"))),
                None => return Err(Error::invalid(format!("{member} is required"))),
            },
            None => Value::Null,
        };
        if let Some(extra) = raw.keys().next() {
            return Err(Error::invalid(format!("unknown argument {extra:?}")));
        }
        Ok(Self { meta, id, payload })
    }

    fn key(&self, rule: Key) -> Result<Option<IdempotencyKey>> {
        match (self.meta.get("idempotency-key"), rule) {
            (None | Some(Value::Null), Key::Required) => Err(IdempotencyKey::required()),
            (None | Some(Value::Null), _) => Ok(None),
            (Some(Value::String(k)), _) => IdempotencyKey::parse(k).map(Some),
            (Some(_), _) => Err(Error::invalid("meta[\"idempotency-key\"] must be a string")),
        }
    }

    fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }
}

impl UcpServer {
    async fn negotiate(&self, transport: &Caller, meta: &Value) -> Result<Ucp> {
        let gw = self.gateway();
        if meta.get("ucp-agent").is_none() {
            let negotiated = gw.negotiate(None).await?;
            return Ok(Ucp { negotiated, caller: transport.clone(), profile: None });
        }
        let rule = if gw.settings().allow_private_profile_hosts {
            SchemeRule::AllowHttpForTests
        } else {
            SchemeRule::HttpsOnly
        };
        let url = negotiate::profile_url_from_meta(meta, rule)?;
        let negotiated = gw.negotiate(Some(&url)).await?;
        // As over REST, the platform owns what it creates, by its profile
        // URL, unless the transport authenticated someone. Unlike REST,
        // where the edge admits a named profile as the signed tier before
        // the handler fetches it, the tool wrapper has already authorised
        // this call as the transport's caller: nothing here verifies a
        // signature, so the claim earns no tier.
        let caller = match &transport.subject {
            Some(_) => transport.clone(),
            None => Caller::claimed(format!("ucp-platform:{url}")),
        };
        Ok(Ucp { negotiated, caller, profile: Some(url) })
    }

    /// Runs one tool: parse, negotiate, check the capability, run the use
    /// case (once per key where a key is given), render.
    async fn call(&self, name: &str, transport: &Caller, raw: JsonObject) -> CallToolResult {
        let Some(spec) = SPECS.iter().find(|s| s.name == name) else {
            return result(&failure(WireVersion::V2026_04_08, &Error::not_found(name)));
        };
        let primary = WireVersion::V2026_04_08;
        let args = match Args::parse(spec, raw) {
            Ok(a) => a,
            Err(e) => return result(&failure(primary, &e)),
        };
        let key = match args.key(spec.key) {
            Ok(k) => k,
            Err(e) => return result(&failure(primary, &e)),
        };
        let ucp = match self.negotiate(transport, &args.meta).await {
            Ok(u) => u,
            Err(e) => return result(&failure(primary, &e)),
        };
        let capability = match name {
            "create_checkout" | "get_checkout" | "update_checkout" | "complete_checkout"
            | "cancel_checkout" => CHECKOUT,
            "create_cart" | "get_cart" | "update_cart" | "cancel_cart" => CART,
            "search_catalog" => CATALOG_SEARCH,
            "lookup_catalog" | "get_product" => CATALOG_LOOKUP,
            _ => ORDER,
        };
        if !ucp.negotiated.is_active(capability) {
            return result(&incompatible(&ucp, capability));
        }
        let Some(key) = key else {
            let (answer, _) = self.run(name, &ucp, &args, String::new()).await;
            return result(&answer);
        };
        let resource = args.id.clone();
        let fp = match fingerprint(name, resource.as_deref(), &args.payload) {
            Ok(fp) => fp,
            Err(e) => return result(&failure(ucp.version(), &e)),
        };
        let gw = self.gateway();
        let outcome = gw
            .idempotent(TRANSPORT, &ucp.caller, &key, &fp, |held| self.run(name, &ucp, &args, held))
            .await;
        match outcome {
            Ok(done) => {
                let mut r = result(&done.response);
                if done.replayed {
                    r.meta = Some(rmcp::model::MetaObject::from(
                        json!({"idempotency-replayed": true})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    ));
                }
                r
            }
            Err(e) => result(&failure(ucp.version(), &e)),
        }
    }

    /// The use case behind `name`, and whether its answer is kept for
    /// replay: a resource or a business refusal is kept, a failure (nothing
    /// happened) releases the key.
    async fn run(
        &self,
        name: &str,
        ucp: &Ucp,
        args: &Args,
        held: String,
    ) -> (StoredResponse, Disposition) {
        let gw = self.gateway();
        let version = ucp.version();
        let caller = &ucp.caller;
        let release = |e: Error| (failure(version, &e), Disposition::Release);
        match name {
            "create_checkout" => {
                let input = match checkout_input(version, &args.payload, &ucp.active(), true) {
                    Ok(i) => i,
                    Err(e) => return release(e),
                };
                let ctx = CheckoutContext {
                    ucp_version: version.as_str().to_owned(),
                    capabilities: ucp.names(Resource::Checkout),
                };
                outcome_reply(gw, version, gw.create_checkout(caller, &ctx, input).await, 201)
            }
            "get_checkout" => {
                let found = match not_found_id("checkout", args.id(), CheckoutId::parse) {
                    Ok(id) => gw.get_checkout(caller, &id).await,
                    Err(e) => Err(e),
                };
                match found {
                    Ok(s) => (checkout_reply(gw, version, &s, 200), Disposition::Keep),
                    Err(e) => release(e),
                }
            }
            "update_checkout" => {
                let id = match not_found_id("checkout", args.id(), CheckoutId::parse) {
                    Ok(id) => id,
                    Err(e) => return release(e),
                };
                let input = match checkout_input(version, &args.payload, &ucp.active(), false) {
                    Ok(i) => i,
                    Err(e) => return release(e),
                };
                outcome_reply(gw, version, gw.update_checkout(caller, &id, input).await, 200)
            }
            "cancel_checkout" => {
                let done = match not_found_id("checkout", args.id(), CheckoutId::parse) {
                    Ok(id) => gw.cancel_checkout(caller, &id).await,
                    Err(e) => Err(e),
                };
                match done {
                    Ok(s) => (checkout_reply(gw, version, &s, 200), Disposition::Keep),
                    Err(e) => release(e),
                }
            }
            "complete_checkout" => self.complete(ucp, args, held).await,
            "create_cart" | "update_cart" => {
                let items = match wire::parse::<v2026_04_08::CartRequest>(args.payload.clone())
                    .and_then(|r| r.lines())
                {
                    Ok(i) => i,
                    Err(e) => return release(e),
                };
                let meta = ucp.negotiated.ucp_response(Resource::Cart);
                let (outcome, status) = if name == "create_cart" {
                    (gw.create_cart_with(caller, &items).await, 201)
                } else {
                    match not_found_id("cart", args.id(), CartId::parse) {
                        Ok(id) => (gw.replace_cart(caller, &id, &items).await, 200),
                        Err(e) => return release(e),
                    }
                };
                match outcome {
                    Ok(CartOutcome::Cart(c)) => {
                        (cart_reply(gw, &meta, &c, status), Disposition::Keep)
                    }
                    Ok(CartOutcome::Rejected(messages)) => (
                        stored(200, &wire::error_response(version, &messages, None)),
                        Disposition::Keep,
                    ),
                    Err(e) => release(e),
                }
            }
            "get_cart" | "cancel_cart" => {
                let meta = ucp.negotiated.ucp_response(Resource::Cart);
                let found = match not_found_id("cart", args.id(), CartId::parse) {
                    Ok(id) if name == "get_cart" => gw.get_cart(caller, &id).await,
                    Ok(id) => gw.cancel_cart(caller, &id).await,
                    Err(e) => Err(e),
                };
                match found {
                    Ok(c) => (cart_reply(gw, &meta, &c, 200), Disposition::Keep),
                    Err(e) => release(e),
                }
            }
            "search_catalog" => {
                let query = match wire::parse::<v2026_04_08::SearchRequest>(args.payload.clone())
                    .and_then(|r| SearchQuery::try_from(&r))
                {
                    Ok(q) => q,
                    Err(e) => return release(e),
                };
                match gw.search(&query).await {
                    Ok(page) => {
                        let meta = ucp.negotiated.ucp_response(Resource::CatalogSearch);
                        let wire = v2026_04_08::SearchResponse::new(&page, meta);
                        (body_of(version, 200, &wire), Disposition::Keep)
                    }
                    Err(e) => release(e),
                }
            }
            "lookup_catalog" => match lookup(gw, ucp, &args.payload).await {
                Ok(r) => (r, Disposition::Keep),
                Err(e) => release(e),
            },
            "get_product" => {
                let request = match wire::parse::<v2026_04_08::ProductRequest>(args.payload.clone())
                {
                    Ok(r) => r,
                    Err(e) => return release(e),
                };
                let product = match gw.product_detail(&request.id).await {
                    Ok(p) => p,
                    Err(e) => return release(e),
                };
                let Some(product) = v2026_04_08::WireProduct::new(&product) else {
                    return release(Error::not_found(format!(
                        "product {} has nothing to sell",
                        request.id
                    )));
                };
                let wire = v2026_04_08::ProductResponse {
                    ucp: ucp.negotiated.ucp_response(Resource::CatalogLookup),
                    product,
                };
                (body_of(version, 200, &wire), Disposition::Keep)
            }
            "get_order" => {
                let found = match not_found_id("order", args.id(), OrderId::parse) {
                    Ok(id) => gw.get_order(caller, &id).await,
                    Err(e) => Err(e),
                };
                match found {
                    Ok(view) => {
                        let wire = v2026_04_08::order(
                            &view.order,
                            &view.events,
                            ucp.negotiated.ucp_response(Resource::Order),
                            &gw.settings().public_base_url,
                            version,
                        );
                        (body_of(version, 200, &wire), Disposition::Keep)
                    }
                    Err(e) => release(e),
                }
            }
            other => release(Error::not_found(format!("no tool {other}"))),
        }
    }

    /// `complete_checkout`: the pipeline, with the response stored under
    /// the held key in the same commit as the order.
    async fn complete(
        &self,
        ucp: &Ucp,
        args: &Args,
        held: String,
    ) -> (StoredResponse, Disposition) {
        let gw = self.gateway();
        let version = ucp.version();
        let release = |e: Error| (failure(version, &e), Disposition::Release);
        let id = match not_found_id("checkout", args.id(), CheckoutId::parse) {
            Ok(id) => id,
            Err(e) => return release(e),
        };
        let request = match version {
            WireVersion::V2026_04_08 => {
                wire::parse::<v2026_04_08::CompleteRequest>(args.payload.clone())
                    .and_then(|r| CompletionRequest::try_from(&r))
            }
            WireVersion::V2026_01_11 => {
                wire::parse::<v2026_01_11::CompleteRequest>(args.payload.clone())
                    .and_then(|r| CompletionRequest::try_from(&r))
            }
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => return release(e),
        };
        if let Some(p) = &request.payment {
            let ours = gw.payments().name();
            if p.handler_id != ours {
                return release(Error::invalid(format!(
                    "payment.instruments: this business takes instruments from handler {ours:?}"
                )));
            }
        }
        let render_gw = Arc::clone(&self.edge.gateway);
        let render: RenderResponse = Arc::new(move |c: &Completion| {
            Ok(checkout_reply(&render_gw, version, &c.session, 200))
        });
        let pipeline = CompleteRequest {
            mandates: request.mandates,
            payment_token: request.payment.and_then(|p| p.token),
            agent_profile_url: ucp.profile.clone(),
            idempotency_key: held,
            render: Some(render),
            ..CompleteRequest::default()
        };
        match gw.complete_checkout(&ucp.caller, &id, pipeline).await {
            Ok(done) => (checkout_reply(gw, version, &done.session, 200), Disposition::Keep),
            // A declined or escalated payment is a business outcome: the
            // session says so in its messages. Kept, so a retry does not try
            // the card again.
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::PaymentDeclined | ErrorCode::PaymentRequiresAction
                ) =>
            {
                match gw.get_checkout(&ucp.caller, &id).await {
                    Ok(s) => (checkout_reply(gw, version, &s, 200), Disposition::Keep),
                    Err(_) => (failure(version, &e), Disposition::Keep),
                }
            }
            Err(e) => release(e),
        }
    }
}

fn checkout_input(
    version: WireVersion,
    payload: &Value,
    active: &[String],
    create: bool,
) -> Result<crate::gateway::CheckoutInput> {
    match (version, create) {
        (WireVersion::V2026_04_08, true) => {
            wire::parse::<v2026_04_08::CheckoutRequest>(payload.clone())?.create_input(active)
        }
        (WireVersion::V2026_04_08, false) => {
            wire::parse::<v2026_04_08::CheckoutRequest>(payload.clone())?.update_input(active)
        }
        (WireVersion::V2026_01_11, true) => {
            wire::parse::<v2026_01_11::CheckoutRequest>(payload.clone())?.create_input(active)
        }
        (WireVersion::V2026_01_11, false) => {
            wire::parse::<v2026_01_11::CheckoutRequest>(payload.clone())?.update_input(active)
        }
    }
}

/// A session in the shape of the version it was created under.
fn checkout_reply(
    gw: &Gateway,
    version: WireVersion,
    s: &CheckoutSession,
    status: u16,
) -> StoredResponse {
    let view = gw.checkout_view(s);
    let shape = WireVersion::of(s.ucp_version.as_deref().unwrap_or(crate::ucp::VERSION));
    let body = match shape {
        WireVersion::V2026_04_08 => wire::to_body(&v2026_04_08::Checkout::from(&view)),
        WireVersion::V2026_01_11 => wire::to_body(&v2026_01_11::Checkout::from(&view)),
    };
    match body {
        Ok(body) => StoredResponse { status, body },
        Err(e) => failure(version, &e),
    }
}

fn outcome_reply(
    gw: &Gateway,
    version: WireVersion,
    outcome: Result<CheckoutOutcome>,
    status: u16,
) -> (StoredResponse, Disposition) {
    match outcome {
        Ok(CheckoutOutcome::Session(s)) => {
            (checkout_reply(gw, version, &s, status), Disposition::Keep)
        }
        Ok(CheckoutOutcome::Rejected(messages)) => {
            (stored(200, &wire::error_response(version, &messages, None)), Disposition::Keep)
        }
        Err(e) => (failure(version, &e), Disposition::Release),
    }
}

fn cart_reply(
    gw: &Gateway,
    meta: &Value,
    cart: &crate::domain::Cart,
    status: u16,
) -> StoredResponse {
    let wire = v2026_04_08::WireCart::new(cart, meta.clone(), &gw.settings().policy_links);
    body_of(WireVersion::V2026_04_08, status, &wire)
}

async fn lookup(gw: &Gateway, ucp: &Ucp, payload: &Value) -> Result<StoredResponse> {
    let request = wire::parse::<v2026_04_08::LookupRequest>(payload.clone())?;
    let ids = request.ids()?;
    let found = gw.lookup_catalog(ids).await?;
    let wire = v2026_04_08::LookupResponse::from_lookup(
        &found,
        ids,
        ucp.negotiated.ucp_response(Resource::CatalogLookup),
        ucp.version(),
    );
    Ok(body_of(ucp.version(), 200, &wire))
}

const INSTRUCTIONS: &str = "The Universal Commerce Protocol (UCP 2026-04-08) shopping service \
of this merchant, as MCP tools (services/shopping/mcp.openrpc.json). Every call takes \
meta[\"ucp-agent\"].profile, the URL of your platform profile; complete and cancel also take \
meta[\"idempotency-key\"]. Results are UCP objects; an error_response comes back with isError.";

impl ServerHandler for UcpServer {
    fn get_info(&self) -> ServerConfig {
        server_config("agentgate-ucp", "agentgate UCP shopping service", INSTRUCTIONS, false)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        run_tool(&self.edge.gateway, self.clone(), Arc::clone(&self.tools), request, context).await
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        let mut result = ListToolsResult::with_all_items(self.tools.list_all());
        if supports_cache_hints(&context) {
            result = result.with_ttl_ms(0).with_cache_scope(rmcp::model::CacheScope::Public);
        }
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.get(name).cloned()
    }
}
