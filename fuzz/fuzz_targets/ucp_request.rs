//! UCP REST request bodies: arbitrary bytes through the JSON parse the HTTP
//! layer does, into the typed requests of both wire versions, and through
//! their validation into the gateway's inputs (checkout create, update and
//! complete; cart; catalog search and lookup), with every extension
//! negotiated and with none. Passing is not panicking: whatever the body,
//! the answer is an input or an error.
#![no_main]

use agentgate::ports::SearchQuery;
use agentgate::ucp::profile::{CAPABILITIES, CHECKOUT};
use agentgate::ucp::wire::CompletionRequest;
use agentgate::ucp::wire::{self, v2026_01_11, v2026_04_08};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

fn negotiations() -> &'static [Vec<String>; 2] {
    static SETS: OnceLock<[Vec<String>; 2]> = OnceLock::new();
    SETS.get_or_init(|| {
        [CAPABILITIES.iter().map(|c| c.name.to_owned()).collect(), vec![CHECKOUT.to_owned()]]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    for active in negotiations() {
        if let Ok(r) = wire::parse::<v2026_04_08::CheckoutRequest>(body.clone()) {
            let _ = r.create_input(active);
            let _ = r.update_input(active);
        }
        if let Ok(r) = wire::parse::<v2026_01_11::CheckoutRequest>(body.clone()) {
            let _ = r.create_input(active);
            let _ = r.update_input(active);
        }
    }
    if let Ok(r) = wire::parse::<v2026_04_08::CompleteRequest>(body.clone()) {
        let _ = CompletionRequest::try_from(&r);
    }
    if let Ok(r) = wire::parse::<v2026_01_11::CompleteRequest>(body.clone()) {
        let _ = CompletionRequest::try_from(&r);
    }
    if let Ok(r) = wire::parse::<v2026_04_08::CartRequest>(body.clone()) {
        let _ = r.lines();
    }
    if let Ok(r) = wire::parse::<v2026_04_08::SearchRequest>(body.clone()) {
        let _ = SearchQuery::try_from(&r);
    }
    if let Ok(r) = wire::parse::<v2026_04_08::LookupRequest>(body) {
        let _ = r.ids();
    }
});
