//! MCP prompts: scripts a user can pick in their client to start a task the
//! safe way. `purchase_with_confirmation` is the buying flow with the human
//! confirmation step written in; `order_status_briefing` turns an order id
//! into a short status report.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{GetPromptResult, PromptMessage, Role};
use rmcp::{prompt, prompt_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::GatewayServer;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PurchaseArgs {
    /// What the user wants to buy, in their words.
    pub goal: String,
    /// The most the user is willing to spend in total, e.g. "80 USD".
    pub budget: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct OrderBriefingArgs {
    /// The order id (starts with ord_).
    pub order_id: String,
}

/// Cuts user-supplied text that is echoed into a prompt, so a huge argument
/// cannot crowd out the instructions.
fn bounded(text: &str, max: usize) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &trimmed[..at]),
        None => trimmed.to_owned(),
    }
}

#[prompt_router(router = "prompt_router", vis = "pub(crate)")]
impl GatewayServer {
    #[prompt(
        name = "purchase_with_confirmation",
        description = "Buy something for the user the safe way: search, present options with \
real prices, get an explicit yes on the exact total, then check out and report the order."
    )]
    pub async fn purchase_with_confirmation(
        &self,
        Parameters(args): Parameters<PurchaseArgs>,
    ) -> GetPromptResult {
        let settings = self.gateway().settings();
        let budget = match args.budget.as_deref().map(str::trim) {
            Some(b) if !b.is_empty() => format!("The user's budget is {}.", bounded(b, 80)),
            _ => "The user has not named a budget; ask before spending more than they expect."
                .to_owned(),
        };
        let script = format!(
            "You are buying on the user's behalf at {merchant} (prices in {currency}). The user \
wants: \"{goal}\". {budget}\n\n\
Follow these steps in order and do not skip the confirmation:\n\
1. Call scout_inventory to find matching products. Use only the prices it returns; never \
guess or reuse a price from memory.\n\
2. Present at most three options to the user: title, variant, unit price and stock state. \
Ask which one (and how many) they want, unless the request was already exact.\n\
3. Call manage_cart (action=create, then add as needed) and read back the cart lines and \
subtotal.\n\
4. Call negotiate_terms with the cart_id. If it reports missing information (email, \
shipping address, shipping option), ask the user for exactly that and call it again.\n\
5. Show the user the items, shipping, any discount and the exact total from negotiate_terms, \
and ask for an explicit yes. If the total exceeds the budget, say so and stop.\n\
6. Only after a clear yes: call execute_checkout with the mandates negotiate_terms asked for \
(AP2 v0.2 checkout and payment mandates when it returned ap2_checkout, otherwise the v0.1 \
intent, cart and payment mandates) and a fresh idempotency_key. If the call \
fails with a retryable error or times out, retry with the same idempotency_key and the same \
arguments; never change the arguments under the same key.\n\
7. Report the order id, the amount charged and the receipt, then offer to track_order.\n\n\
Store policies. Returns: {returns} Shipping: {shipping}",
            merchant = settings.merchant_name,
            currency = settings.currency.code(),
            goal = bounded(&args.goal, 500),
            returns = settings.policies.returns,
            shipping = settings.policies.shipping,
        );
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, script)])
            .with_description("A confirmed purchase, step by step")
    }

    #[prompt(
        name = "order_status_briefing",
        description = "Brief the user on one of their orders: status, what happened so far, \
tracking, and what to expect next."
    )]
    pub async fn order_status_briefing(
        &self,
        Parameters(args): Parameters<OrderBriefingArgs>,
    ) -> GetPromptResult {
        let text = format!(
            "Call track_order with order_id \"{id}\" (or read the resource \
agentgate://orders/{id}). Then brief the user in a few sentences: the current status, \
the amount paid, the latest events with their dates, and carrier and tracking number if the \
order has shipped. If it has not shipped, say what happens next according to the store's \
shipping policy: {shipping} Do not speculate beyond what the tool returns; if the order is \
not found, say so plainly.",
            id = bounded(&args.order_id, 80),
            shipping = self.gateway().settings().policies.shipping,
        );
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description("A short status report on one order")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_text_is_bounded() {
        assert_eq!(bounded("  short ", 10), "short");
        assert_eq!(bounded(&"é".repeat(20), 5), format!("{}…", "é".repeat(5)));
    }
}
