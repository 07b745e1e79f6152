//! The UCP REST binding under `/ucp/v1` (UCP 2026-04-08
//! `services/shopping/rest.openapi.json`; 2026-01-11 platforms get their
//! version's shapes). Handlers negotiate, parse, call one [`Gateway`] use
//! case and render; they decide nothing about commerce.
//!
//! Every request is negotiated first ("Negotiation Protocol", overview):
//! the `UCP-Agent` header names the platform profile, which is fetched
//! through the gateway's profile fetcher and intersected with the business
//! offer. A request without `UCP-Agent` is served as if the platform had
//! declared exactly the business profile: the full capability set at the
//! primary version (2026-04-08), as an anonymous caller, except the AP2
//! mandate extension, which only a platform that declares it gets. The spec marks the
//! header required; answering anyway keeps curl and simple tools usable,
//! and such a caller owns nothing (its sessions are reachable by id only).
//!
//! Who owns what: the caller is the platform, identified by its profile
//! URL, until an authentication layer provides something stronger. A
//! session created by one platform reads as not found for another.
//!
//! Responses and errors, by layer:
//! - A use case's answer is a UCP body: the resource, with business
//!   problems among its `messages` (HTTP 200/201), or an `error_response`
//!   (`{ucp: {version, status: "error"}, messages}`) when there is no
//!   resource: 200 for a business refusal (items that do not exist,
//!   capabilities that do not intersect), the error code's status for a
//!   failed request (404 unknown or foreign resource, 410 expired, 409 a
//!   terminal session, 422 limits).
//! - What the edge refuses before any use case runs has the gateway's
//!   standard error body (`{"error": {code, message, retryable,
//!   trace_id}}`): unknown route, wrong method, malformed or oversized
//!   JSON, a missing or reused `Idempotency-Key`, invalid input, and
//!   negotiation failures (`invalid_profile_url` 400, `profile_unreachable`
//!   424, `profile_malformed` and `version_unsupported` 422). The spec
//!   leaves protocol-error bodies open ("Protocol errors use standard HTTP
//!   status codes"; its examples carry `code` and `content`).
//!
//! Idempotency: the operations whose OpenAPI lists `Idempotency-Key`
//! (checkout create, update, complete and cancel; cart create, update and
//! cancel) require it and run through [`Gateway::idempotent`] on a task of
//! their own, so a dropped connection cannot separate an effect from its
//! stored response. Catalog searches and lookups are POSTs but read-only
//! and list no key; they take none. Replays carry `Idempotency-Replayed:
//! true`. A use-case failure releases the key (nothing happened); a
//! resource, a business refusal, and a declined payment at completion are
//! kept.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::error::{self, ApiError, ApiJson, ApiPath};
use super::request_id;
use super::AppState;
use crate::domain::checkout::{Message, MessageType};
use crate::domain::order::OrderWebhook;
use crate::domain::{CartId, CheckoutId, CheckoutSession, Error, ErrorCode, OrderId, Result};
use crate::gateway::idempotency::fingerprint;
use crate::gateway::{
    Caller, CartOutcome, CheckoutContext, CheckoutOutcome, CompleteRequest, Completion,
    Disposition, Gateway, IdempotencyKey, RenderResponse, Tier,
};
use crate::ports::{SearchQuery, StoredResponse};
use crate::ucp::negotiate::{self, Negotiated, Resource, SchemeRule};
use crate::ucp::profile::{AP2_MANDATE, CART, CATALOG_LOOKUP, CATALOG_SEARCH, CHECKOUT, ORDER};
use crate::ucp::wire::{self, v2026_01_11, v2026_04_08, CompletionRequest, WireVersion};
use crate::ucp::VERSION;

/// The transport name idempotency keys are scoped to.
pub const TRANSPORT: &str = "ucp-rest";

/// Marks a response replayed from an idempotency record.
pub const IDEMPOTENCY_REPLAYED: &str = "idempotency-replayed";

/// The routes of the binding, to be nested at `/ucp/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/checkout-sessions", post(create_checkout))
        .route("/checkout-sessions/{id}", get(get_checkout).put(update_checkout))
        .route("/checkout-sessions/{id}/complete", post(complete_checkout))
        .route("/checkout-sessions/{id}/cancel", post(cancel_checkout))
        .route("/carts", post(create_cart))
        .route("/carts/{id}", get(get_cart).put(update_cart))
        .route("/carts/{id}/cancel", post(cancel_cart))
        .route("/catalog/search", post(search_catalog))
        .route("/catalog/lookup", post(lookup_catalog))
        .route("/catalog/product", post(get_product))
        .route("/orders/{id}", get(get_order))
        .fallback(error::not_found)
}

// ---- Negotiation --------------------------------------------------------------

/// The negotiated protocol of one request, and who is asking.
struct Ucp {
    negotiated: Negotiated,
    caller: Caller,
    /// The platform's profile, whose keys verify its mandates; none for a
    /// request without `UCP-Agent`.
    profile: Option<url::Url>,
}

impl Ucp {
    fn version(&self) -> WireVersion {
        WireVersion::of(self.negotiated.version())
    }

    /// Every negotiated capability name.
    fn active(&self) -> Vec<String> {
        self.negotiated.capabilities().iter().map(|c| c.name.clone()).collect()
    }

    /// The capability names a response about `resource` lists.
    fn names(&self, resource: Resource) -> Vec<String> {
        self.negotiated.relevant(resource).iter().map(|c| c.name.clone()).collect()
    }
}

fn offer(gateway: &Gateway) -> &negotiate::Offer {
    gateway.ucp_offer_with_ap2()
}

/// Negotiates with the platform named in `UCP-Agent`, or with the
/// business's own capability set when there is no header (see the module
/// docs).
async fn negotiate(gateway: &Gateway, headers: &HeaderMap, authed: Option<&Caller>) -> Result<Ucp> {
    // An authenticated caller (API key, token) is who owns what; without
    // one, the negotiated platform is.
    let authed = authed.filter(|c| c.tier > Tier::Signed).cloned();
    let offer = offer(gateway);
    let values = headers
        .get_all("ucp-agent")
        .iter()
        .map(|v| v.to_str())
        .collect::<std::result::Result<Vec<&str>, _>>()
        .map_err(|_| {
            Error::new(ErrorCode::InvalidProfileUrl, "UCP-Agent must be printable ASCII")
        })?;
    if values.is_empty() {
        let own = format!("{}/.well-known/ucp", gateway.settings().public_base_url);
        let url = url::Url::parse(&own).map_err(Error::internal)?;
        // The AP2 extension is a commitment both sides make (the platform
        // must check the merchant's signature and present mandates), so it
        // is never assumed for a platform that did not declare it.
        let capabilities: Map<String, Value> = offer
            .capabilities(VERSION)
            .unwrap_or_default()
            .iter()
            .filter(|c| c.name != AP2_MANDATE)
            .map(|c| (c.name.clone(), json!([{ "version": c.version }])))
            .collect();
        let profile = json!({"ucp": {"version": VERSION, "capabilities": capabilities}});
        let negotiated = negotiate::negotiate(offer, url, &profile)?;
        return Ok(Ucp {
            negotiated,
            caller: authed.unwrap_or_else(Caller::anonymous),
            profile: None,
        });
    }
    // Several header lines form one list (RFC 9110 section 5.3).
    let rule = if gateway.settings().allow_private_profile_hosts {
        SchemeRule::AllowHttpForTests
    } else {
        SchemeRule::HttpsOnly
    };
    let url = negotiate::profile_url_from_header(&values.join(", "), rule)?;
    let profile = gateway.profiles().fetch(&url).await?;
    let caller = authed.unwrap_or_else(|| Caller::subject(format!("ucp-platform:{url}")));
    let negotiated = negotiate::negotiate(offer, url.clone(), &profile)?;
    Ok(Ucp { negotiated, caller, profile: Some(url) })
}

// ---- Responses ----------------------------------------------------------------

fn json_response(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn stored(status: u16, body: Vec<u8>) -> StoredResponse {
    StoredResponse { status, body }
}

/// An `error_response` with `status`.
fn ucp_error(version: WireVersion, status: u16, messages: &[Message]) -> StoredResponse {
    let body = wire::error_response(version, messages, None);
    stored(status, serde_json::to_vec(&body).unwrap_or_default())
}

/// A failed use case as an `error_response` with the code's status.
fn failure(version: WireVersion, err: &Error) -> StoredResponse {
    ucp_error(version, err.code().http_status(), &[wire::error_message(err)])
}

/// The answer when the operation's capability is not in the intersection:
/// HTTP 200 with `capabilities_incompatible` ("Capabilities Incompatible",
/// overview, transport bindings).
fn incompatible(ucp: &Ucp, capability: &str) -> Response {
    let message = Message {
        kind: MessageType::Error,
        code: "capabilities_incompatible".into(),
        content: format!(
            "{capability} is not among the capabilities negotiated with this platform"
        ),
        severity: Some(crate::domain::checkout::Severity::Unrecoverable),
        path: None,
    };
    let r = ucp_error(ucp.version(), 200, &[message]);
    json_response(r.status, r.body)
}

fn send(r: StoredResponse) -> Response {
    json_response(r.status, r.body)
}

/// Renders a session in the shape of the version it was created under.
fn checkout_body(gateway: &Gateway, s: &CheckoutSession) -> Result<Vec<u8>> {
    wire::to_body(&gateway.checkout_document(s)?)
}

fn checkout_reply(
    gateway: &Gateway,
    version: WireVersion,
    s: &CheckoutSession,
    status: u16,
) -> StoredResponse {
    match checkout_body(gateway, s) {
        Ok(body) => stored(status, body),
        Err(e) => failure(version, &e),
    }
}

/// The reply to a create or update: the session (kept), a refusal (kept:
/// a business answer), or a failure (released: nothing was written).
fn outcome_reply(
    gateway: &Gateway,
    version: WireVersion,
    result: Result<CheckoutOutcome>,
    status: u16,
) -> (StoredResponse, Disposition) {
    match result {
        Ok(CheckoutOutcome::Session(s)) => {
            (checkout_reply(gateway, version, &s, status), Disposition::Keep)
        }
        Ok(CheckoutOutcome::Rejected(messages)) => {
            (ucp_error(version, 200, &messages), Disposition::Keep)
        }
        Err(e) => (failure(version, &e), Disposition::Release),
    }
}

// ---- Idempotent mutations -----------------------------------------------------

fn idempotency_key(headers: &HeaderMap) -> Result<IdempotencyKey> {
    match headers.get("idempotency-key") {
        None => Err(IdempotencyKey::required()),
        Some(v) => IdempotencyKey::parse(
            v.to_str().map_err(|_| Error::invalid("Idempotency-Key must be printable ASCII"))?,
        ),
    }
}

/// A body that may be absent (cancel takes none): empty is `null`,
/// anything else must be JSON.
fn optional_json(body: &Bytes) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| {
        Error::new(ErrorCode::MalformedJson, format!("the request body is not valid JSON: {e}"))
    })
}

/// Runs a mutation once per idempotency key, on its own task, and sends
/// its response (or the replay of the first one).
async fn run_idempotent<F, Fut>(
    gateway: Arc<Gateway>,
    caller: Caller,
    key: IdempotencyKey,
    operation: &'static str,
    resource: Option<&str>,
    body: &Value,
    run: F,
) -> Response
where
    F: FnOnce(Arc<Gateway>, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (StoredResponse, Disposition)> + Send + 'static,
{
    let fp = match fingerprint(operation, resource, body) {
        Ok(fp) => fp,
        Err(e) => return ApiError(e).into_response(),
    };
    let rid = request_id::current_request_id();
    // Boxed: the use case's future is tens of kilobytes, and tokio copies
    // a spawned future into its task cell and again on every stage change.
    // A box is built once and moved as a pointer.
    let task = tokio::spawn(Box::pin(request_id::scoped(rid, async move {
        let gw = Arc::clone(&gateway);
        gateway.idempotent(TRANSPORT, &caller, &key, &fp, move |held| run(gw, held)).await
    })));
    match task.await {
        Ok(Ok(done)) => {
            let mut resp = json_response(done.response.status, done.response.body);
            if done.replayed {
                resp.headers_mut().insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
            }
            resp
        }
        Ok(Err(e)) => ApiError(e).into_response(),
        Err(join) => {
            ApiError(Error::internal(format!("idempotent task failed: {join}"))).into_response()
        }
    }
}

/// The common start of a mutation: the key, then negotiation. Both refuse
/// with the standard error body, before any effect.
async fn begin(
    state: &AppState,
    headers: &HeaderMap,
    authed: Option<&Caller>,
) -> std::result::Result<(IdempotencyKey, Ucp), Response> {
    let key = idempotency_key(headers).map_err(|e| ApiError(e).into_response())?;
    let ucp = negotiate(&state.gateway, headers, authed)
        .await
        .map_err(|e| ApiError(e).into_response())?;
    Ok((key, ucp))
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return ApiError(e).into_response(),
        }
    };
}

// ---- Checkout -----------------------------------------------------------------

fn parse_checkout_id(raw: &str) -> Result<CheckoutId> {
    // A malformed id cannot name a session: the answer is the same as for
    // an unknown one.
    CheckoutId::parse(raw).map_err(|_| Error::not_found(format!("checkout {raw} does not exist")))
}

async fn create_checkout(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let (key, ucp) = match begin(&state, &headers, authed.as_ref().map(|e| &e.0)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !ucp.negotiated.is_active(CHECKOUT) {
        return incompatible(&ucp, CHECKOUT);
    }
    let active = ucp.active();
    let version = ucp.version();
    let input = tri!(match version {
        WireVersion::V2026_04_08 => wire::parse::<v2026_04_08::CheckoutRequest>(body.clone())
            .and_then(|r| r.create_input(&active)),
        WireVersion::V2026_01_11 => wire::parse::<v2026_01_11::CheckoutRequest>(body.clone())
            .and_then(|r| r.create_input(&active)),
    });
    // The session lists what a checkout response lists: checkout and its
    // extensions.
    let capabilities = ucp.names(Resource::Checkout);
    let ctx = CheckoutContext { ucp_version: version.as_str().to_owned(), capabilities };
    let caller = ucp.caller.clone();
    run_idempotent(
        Arc::clone(&state.gateway),
        ucp.caller,
        key,
        "create_checkout",
        None,
        &body,
        move |gw, _held| async move {
            let result = gw.create_checkout(&caller, &ctx, input).await;
            outcome_reply(&gw, version, result, 201)
        },
    )
    .await
}

async fn get_checkout(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    let ucp = tri!(negotiate(&state.gateway, &headers, authed.as_ref().map(|e| &e.0)).await);
    if !ucp.negotiated.is_active(CHECKOUT) {
        return incompatible(&ucp, CHECKOUT);
    }
    let gw = &state.gateway;
    let result = match parse_checkout_id(&id) {
        Ok(id) => gw.get_checkout(&ucp.caller, &id).await,
        Err(e) => Err(e),
    };
    send(match result {
        Ok(s) => checkout_reply(gw, ucp.version(), &s, 200),
        Err(e) => failure(ucp.version(), &e),
    })
}

async fn update_checkout(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let (key, ucp) = match begin(&state, &headers, authed.as_ref().map(|e| &e.0)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !ucp.negotiated.is_active(CHECKOUT) {
        return incompatible(&ucp, CHECKOUT);
    }
    let active = ucp.active();
    let version = ucp.version();
    let input = tri!(match version {
        WireVersion::V2026_04_08 => wire::parse::<v2026_04_08::CheckoutRequest>(body.clone())
            .and_then(|r| r.update_input(&active)),
        WireVersion::V2026_01_11 => wire::parse::<v2026_01_11::CheckoutRequest>(body.clone())
            .and_then(|r| r.update_input(&active)),
    });
    let caller = ucp.caller.clone();
    let resource = id.clone();
    run_idempotent(
        Arc::clone(&state.gateway),
        ucp.caller,
        key,
        "update_checkout",
        Some(&resource),
        &body,
        move |gw, _held| async move {
            let result = match parse_checkout_id(&id) {
                Ok(id) => gw.update_checkout(&caller, &id, input).await,
                Err(e) => Err(e),
            };
            outcome_reply(&gw, version, result, 200)
        },
    )
    .await
}

async fn cancel_checkout(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, ucp) = match begin(&state, &headers, authed.as_ref().map(|e| &e.0)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !ucp.negotiated.is_active(CHECKOUT) {
        return incompatible(&ucp, CHECKOUT);
    }
    let body = tri!(optional_json(&body));
    let version = ucp.version();
    let caller = ucp.caller.clone();
    let resource = id.clone();
    run_idempotent(
        Arc::clone(&state.gateway),
        ucp.caller,
        key,
        "cancel_checkout",
        Some(&resource),
        &body,
        move |gw, _held| async move {
            let result = match parse_checkout_id(&id) {
                Ok(id) => gw.cancel_checkout(&caller, &id).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(s) => (checkout_reply(&gw, version, &s, 200), Disposition::Keep),
                Err(e) => (failure(version, &e), Disposition::Release),
            }
        },
    )
    .await
}

async fn complete_checkout(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let (key, ucp) = match begin(&state, &headers, authed.as_ref().map(|e| &e.0)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !ucp.negotiated.is_active(CHECKOUT) {
        return incompatible(&ucp, CHECKOUT);
    }
    let version = ucp.version();
    let request = tri!(match version {
        WireVersion::V2026_04_08 => wire::parse::<v2026_04_08::CompleteRequest>(body.clone())
            .and_then(|r| CompletionRequest::try_from(&r)),
        WireVersion::V2026_01_11 => wire::parse::<v2026_01_11::CompleteRequest>(body.clone())
            .and_then(|r| CompletionRequest::try_from(&r)),
    });
    if let Some(p) = &request.payment {
        let ours = state.gateway.payments().name();
        if p.handler_id != ours {
            return ApiError(Error::invalid(format!(
                "payment.instruments: this business takes instruments from handler {ours:?}"
            )))
            .into_response();
        }
    }
    let caller = ucp.caller.clone();
    let profile = ucp.profile.clone();
    // The platform's order webhook, when it negotiated the order
    // capability with one: every change of the order is posted there.
    let order_webhook = ucp
        .negotiated
        .platform()
        .webhook_url
        .as_ref()
        .filter(|_| ucp.negotiated.is_active(ORDER))
        .map(|url| OrderWebhook {
            url: url.to_string(),
            ucp_version: version.as_str().to_owned(),
            capabilities: ucp.names(Resource::Order),
        });
    let resource = id.clone();
    run_idempotent(
        Arc::clone(&state.gateway),
        ucp.caller,
        key,
        "complete_checkout",
        Some(&resource),
        &body,
        move |gw, held| async move {
            let id = match parse_checkout_id(&id) {
                Ok(id) => id,
                Err(e) => return (failure(version, &e), Disposition::Release),
            };
            // The pipeline stores this rendering under the held key in the
            // same commit as the order, so the record cannot miss the order.
            let render_gw = Arc::clone(&gw);
            let render: RenderResponse = Arc::new(move |c: &Completion| {
                Ok(checkout_reply(&render_gw, version, &c.session, 200))
            });
            let pipeline = CompleteRequest {
                mandates: request.mandates,
                payment_token: request.payment.and_then(|p| p.token),
                agent_profile_url: profile,
                idempotency_key: held,
                trace_id: request_id::current_request_id(),
                render: Some(render),
                order_webhook,
            };
            match gw.complete_checkout(&caller, &id, pipeline).await {
                Ok(done) => (checkout_reply(&gw, version, &done.session, 200), Disposition::Keep),
                // A declined or escalated payment is a business outcome
                // (HTTP 200): the session says what happened in its
                // messages, and escalation gives the continue_url. Kept,
                // so a retry does not try the card again.
                Err(e)
                    if matches!(
                        e.code(),
                        ErrorCode::PaymentDeclined | ErrorCode::PaymentRequiresAction
                    ) =>
                {
                    match gw.load_checkout(&caller, &id).await {
                        Ok(s) => (checkout_reply(&gw, version, &s.value, 200), Disposition::Keep),
                        Err(_) => (failure(version, &e), Disposition::Keep),
                    }
                }
                Err(e) => (failure(version, &e), Disposition::Release),
            }
        },
    )
    .await
}

// ---- Cart ---------------------------------------------------------------------

fn parse_cart_id(raw: &str) -> Result<CartId> {
    CartId::parse(raw).map_err(|_| Error::not_found(format!("cart {raw} does not exist")))
}

fn cart_reply(
    gateway: &Gateway,
    ucp: &Value,
    cart: &crate::domain::Cart,
    status: u16,
) -> StoredResponse {
    let wire = v2026_04_08::WireCart::new(cart, ucp.clone(), &gateway.settings().policy_links);
    match wire::to_body(&wire) {
        Ok(body) => stored(status, body),
        Err(e) => failure(WireVersion::V2026_04_08, &e),
    }
}

fn cart_outcome_reply(
    gateway: &Gateway,
    ucp_meta: &Value,
    version: WireVersion,
    result: Result<CartOutcome>,
    status: u16,
) -> (StoredResponse, Disposition) {
    match result {
        Ok(CartOutcome::Cart(c)) => (cart_reply(gateway, ucp_meta, &c, status), Disposition::Keep),
        Ok(CartOutcome::Rejected(messages)) => {
            (ucp_error(version, 200, &messages), Disposition::Keep)
        }
        Err(e) => (failure(version, &e), Disposition::Release),
    }
}

async fn create_cart(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let (key, ucp) = match begin(&state, &headers, authed.as_ref().map(|e| &e.0)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !ucp.negotiated.is_active(CART) {
        return incompatible(&ucp, CART);
    }
    let items = tri!(wire::parse::<v2026_04_08::CartRequest>(body.clone()).and_then(|r| r.lines()));
    let (version, meta, caller) =
        (ucp.version(), ucp.negotiated.ucp_response(Resource::Cart), ucp.caller.clone());
    run_idempotent(
        Arc::clone(&state.gateway),
        ucp.caller,
        key,
        "create_cart",
        None,
        &body,
        move |gw, _held| async move {
            let result = gw.create_cart_with(&caller, &items).await;
            cart_outcome_reply(&gw, &meta, version, result, 201)
        },
    )
    .await
}

async fn get_cart(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    let ucp = tri!(negotiate(&state.gateway, &headers, authed.as_ref().map(|e| &e.0)).await);
    if !ucp.negotiated.is_active(CART) {
        return incompatible(&ucp, CART);
    }
    let gw = &state.gateway;
    let result = match parse_cart_id(&id) {
        Ok(id) => gw.get_cart(&ucp.caller, &id).await,
        Err(e) => Err(e),
    };
    send(match result {
        Ok(c) => cart_reply(gw, &ucp.negotiated.ucp_response(Resource::Cart), &c, 200),
        Err(e) => failure(ucp.version(), &e),
    })
}

async fn update_cart(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let (key, ucp) = match begin(&state, &headers, authed.as_ref().map(|e| &e.0)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !ucp.negotiated.is_active(CART) {
        return incompatible(&ucp, CART);
    }
    let items = tri!(wire::parse::<v2026_04_08::CartRequest>(body.clone()).and_then(|r| r.lines()));
    let (version, meta, caller) =
        (ucp.version(), ucp.negotiated.ucp_response(Resource::Cart), ucp.caller.clone());
    let resource = id.clone();
    run_idempotent(
        Arc::clone(&state.gateway),
        ucp.caller,
        key,
        "update_cart",
        Some(&resource),
        &body,
        move |gw, _held| async move {
            let result = match parse_cart_id(&id) {
                Ok(id) => gw.replace_cart(&caller, &id, &items).await,
                Err(e) => Err(e),
            };
            cart_outcome_reply(&gw, &meta, version, result, 200)
        },
    )
    .await
}

async fn cancel_cart(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, ucp) = match begin(&state, &headers, authed.as_ref().map(|e| &e.0)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !ucp.negotiated.is_active(CART) {
        return incompatible(&ucp, CART);
    }
    let body = tri!(optional_json(&body));
    let (version, meta, caller) =
        (ucp.version(), ucp.negotiated.ucp_response(Resource::Cart), ucp.caller.clone());
    let resource = id.clone();
    run_idempotent(
        Arc::clone(&state.gateway),
        ucp.caller,
        key,
        "cancel_cart",
        Some(&resource),
        &body,
        move |gw, _held| async move {
            let result = match parse_cart_id(&id) {
                Ok(id) => gw.cancel_cart(&caller, &id).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(c) => (cart_reply(&gw, &meta, &c, 200), Disposition::Keep),
                Err(e) => (failure(version, &e), Disposition::Release),
            }
        },
    )
    .await
}

// ---- Catalog ------------------------------------------------------------------

async fn search_catalog(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let ucp = tri!(negotiate(&state.gateway, &headers, authed.as_ref().map(|e| &e.0)).await);
    if !ucp.negotiated.is_active(CATALOG_SEARCH) {
        return incompatible(&ucp, CATALOG_SEARCH);
    }
    let query = tri!(
        wire::parse::<v2026_04_08::SearchRequest>(body).and_then(|r| SearchQuery::try_from(&r))
    );
    send(match state.gateway.search(&query).await {
        Ok(page) => {
            let wire = v2026_04_08::SearchResponse::new(
                &page,
                ucp.negotiated.ucp_response(Resource::CatalogSearch),
            );
            match wire::to_body(&wire) {
                Ok(b) => stored(200, b),
                Err(e) => failure(ucp.version(), &e),
            }
        }
        Err(e) => failure(ucp.version(), &e),
    })
}

async fn lookup_catalog(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let ucp = tri!(negotiate(&state.gateway, &headers, authed.as_ref().map(|e| &e.0)).await);
    if !ucp.negotiated.is_active(CATALOG_LOOKUP) {
        return incompatible(&ucp, CATALOG_LOOKUP);
    }
    let request = tri!(wire::parse::<v2026_04_08::LookupRequest>(body));
    let ids = tri!(request.ids());
    let lookup = match state.gateway.lookup_catalog(ids).await {
        Ok(l) => l,
        Err(e) => return send(failure(ucp.version(), &e)),
    };
    let wire = v2026_04_08::LookupResponse::from_lookup(
        &lookup,
        ids,
        ucp.negotiated.ucp_response(Resource::CatalogLookup),
        ucp.version(),
    );
    send(match wire::to_body(&wire) {
        Ok(b) => stored(200, b),
        Err(e) => failure(ucp.version(), &e),
    })
}

async fn get_product(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let ucp = tri!(negotiate(&state.gateway, &headers, authed.as_ref().map(|e| &e.0)).await);
    if !ucp.negotiated.is_active(CATALOG_LOOKUP) {
        return incompatible(&ucp, CATALOG_LOOKUP);
    }
    let request = tri!(wire::parse::<v2026_04_08::ProductRequest>(body));
    let product = match state.gateway.product_detail(&request.id).await {
        Ok(p) => p,
        Err(e) => return send(failure(ucp.version(), &e)),
    };
    let Some(product) = v2026_04_08::WireProduct::new(&product) else {
        let e = Error::not_found(format!("product {} has nothing to sell", request.id));
        return send(failure(ucp.version(), &e));
    };
    let wire = v2026_04_08::ProductResponse {
        ucp: ucp.negotiated.ucp_response(Resource::CatalogLookup),
        product,
    };
    send(match wire::to_body(&wire) {
        Ok(b) => stored(200, b),
        Err(e) => failure(ucp.version(), &e),
    })
}

// ---- Order --------------------------------------------------------------------

async fn get_order(
    State(state): State<AppState>,
    authed: Option<axum::Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    let ucp = tri!(negotiate(&state.gateway, &headers, authed.as_ref().map(|e| &e.0)).await);
    if !ucp.negotiated.is_active(ORDER) {
        return incompatible(&ucp, ORDER);
    }
    let gw = &state.gateway;
    let result = match OrderId::parse(&id) {
        Ok(id) => gw.get_order(&ucp.caller, &id).await,
        Err(_) => Err(Error::not_found(format!("order {id} does not exist"))),
    };
    send(match result {
        Ok(view) => {
            let wire = v2026_04_08::order(
                &view.order,
                &view.events,
                ucp.negotiated.ucp_response(Resource::Order),
                &gw.settings().public_base_url,
                ucp.version(),
            );
            match wire::to_body(&wire) {
                Ok(b) => stored(200, b),
                Err(e) => failure(ucp.version(), &e),
            }
        }
        Err(e) => failure(ucp.version(), &e),
    })
}
