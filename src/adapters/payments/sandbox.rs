//! The sandbox processor: the default, with deterministic test tokens.
//!
//! | token                | outcome                                        |
//! |----------------------|------------------------------------------------|
//! | `success_token`      | the charge succeeds                            |
//! | `fail_token`         | declined (`card_declined`)                     |
//! | `insufficient_funds` | declined (`insufficient_funds`)                |
//! | `requires_action`    | the buyer must act at a `continue_url`          |
//! | anything else        | declined (`unknown_token`)                     |
//!
//! Like a real processor it honours idempotency keys: a repeated key returns
//! the first outcome and moves no money, and `find_charge` looks a key up
//! without charging. Every charge, capture and refund call is recorded, so
//! tests can assert "exactly one charge".
//!
//! `requires_action` plays 3-D Secure: the charge waits, its `continue_url`
//! is the gateway's own `/sandbox/authenticate/{reference}` page, which
//! calls [`Payments::approve_action`], and only a later
//! [`Payments::capture`] moves the money. Until the buyer approves, a
//! capture answers `RequiresAction` again with the same URL.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::{Error, ErrorCode, Money, Result};
use crate::ports::{
    CaptureRequest, ChargeOutcome, ChargeRequest, PaymentStatus, Payments, RefundRequest,
};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxCall {
    Charge { idempotency_key: String, amount: Money, token: String, replayed: bool },
    Refund { idempotency_key: String, charge_reference: String, amount: Money, replayed: bool },
    Capture { idempotency_key: String, reference: String, replayed: bool },
}

/// A charge waiting for the buyer: what it will capture, and the key it
/// was charged under (so `find_charge` reports the capture).
struct Pending {
    charge_key: String,
    amount: Money,
    approved: bool,
}

#[derive(Default)]
struct State {
    calls: Vec<SandboxCall>,
    charges_by_key: HashMap<String, ChargeOutcome>,
    refunds_by_key: HashMap<String, String>,
    captures_by_key: HashMap<String, ChargeOutcome>,
    pending: HashMap<String, Pending>,
    status: HashMap<String, PaymentStatus>,
    charged: HashMap<String, Money>,
    refunded: HashMap<String, i64>,
    next: u64,
}

/// The sandbox processor. `continue_base` is where `requires_action`
/// escalations send the buyer (the gateway's own public URL).
pub struct SandboxPayments {
    continue_base: String,
    state: Mutex<State>,
}

impl SandboxPayments {
    pub fn new(continue_base: impl Into<String>) -> Self {
        Self { continue_base: continue_base.into(), state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The buyer's approval page of a waiting charge.
    fn continue_url(&self, reference: &str) -> String {
        format!("{}/sandbox/authenticate/{reference}", self.continue_base)
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<SandboxCall> {
        self.lock().calls.clone()
    }

    /// Charges that moved money (replays excluded).
    pub fn successful_charges(&self) -> usize {
        self.lock().charged.len()
    }

    /// Charge calls of any outcome that were not idempotent replays.
    pub fn charge_attempts(&self) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| matches!(c, SandboxCall::Charge { replayed: false, .. }))
            .count()
    }
}

impl SandboxPayments {
    fn charge_now(&self, req: &ChargeRequest) -> Result<ChargeOutcome> {
        if req.amount.minor() <= 0 {
            return Err(Error::invalid("a charge must be for a positive amount"));
        }
        let mut st = self.lock();
        if let Some(prior) = st.charges_by_key.get(&req.idempotency_key).cloned() {
            st.calls.push(SandboxCall::Charge {
                idempotency_key: req.idempotency_key.clone(),
                amount: req.amount,
                token: req.token.clone(),
                replayed: true,
            });
            return Ok(prior);
        }
        st.next += 1;
        let reference = format!("sbx_ch_{:08}", st.next);
        let outcome = match req.token.as_str() {
            "success_token" | SLOW_SUCCESS_TOKEN => {
                st.charged.insert(reference.clone(), req.amount);
                st.status.insert(reference.clone(), PaymentStatus::Succeeded);
                ChargeOutcome::Succeeded { reference }
            }
            "requires_action" => {
                st.status.insert(reference.clone(), PaymentStatus::RequiresAction);
                let pending = Pending {
                    charge_key: req.idempotency_key.clone(),
                    amount: req.amount,
                    approved: false,
                };
                st.pending.insert(reference.clone(), pending);
                ChargeOutcome::RequiresAction {
                    continue_url: self.continue_url(&reference),
                    reference,
                }
            }
            "fail_token" => ChargeOutcome::Declined { reason: "card_declined".into() },
            "insufficient_funds" => ChargeOutcome::Declined { reason: "insufficient_funds".into() },
            _ => ChargeOutcome::Declined { reason: "unknown_token".into() },
        };
        st.calls.push(SandboxCall::Charge {
            idempotency_key: req.idempotency_key.clone(),
            amount: req.amount,
            token: req.token.clone(),
            replayed: false,
        });
        st.charges_by_key.insert(req.idempotency_key.clone(), outcome.clone());
        Ok(outcome)
    }
}

/// Succeeds like `success_token`, but the answer comes back
/// [`SLOW_ANSWER`] after the charge is recorded: a processor whose reply is
/// still on the wire, for crash and load tests that need requests to sit
/// between the charge and the commit.
pub const SLOW_SUCCESS_TOKEN: &str = "slow_success_token";
/// How long [`SLOW_SUCCESS_TOKEN`] holds its answer.
pub const SLOW_ANSWER: std::time::Duration = std::time::Duration::from_millis(100);

#[async_trait]
impl Payments for SandboxPayments {
    fn name(&self) -> &str {
        "sandbox"
    }

    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome> {
        let outcome = self.charge_now(req)?;
        if req.token == SLOW_SUCCESS_TOKEN {
            tokio::time::sleep(SLOW_ANSWER).await;
        }
        Ok(outcome)
    }

    async fn find_charge(&self, idempotency_key: &str) -> Result<Option<ChargeOutcome>> {
        // A lookup, not a call that could move money, so it is not recorded.
        Ok(self.lock().charges_by_key.get(idempotency_key).cloned())
    }

    async fn capture(&self, req: &CaptureRequest) -> Result<ChargeOutcome> {
        let mut st = self.lock();
        if let Some(prior) = st.captures_by_key.get(&req.idempotency_key).cloned() {
            st.calls.push(SandboxCall::Capture {
                idempotency_key: req.idempotency_key.clone(),
                reference: req.reference.clone(),
                replayed: true,
            });
            return Ok(prior);
        }
        let Some((approved, amount, charge_key)) =
            st.pending.get(&req.reference).map(|p| (p.approved, p.amount, p.charge_key.clone()))
        else {
            return Err(Error::not_found(format!(
                "no payment {} waits for capture",
                req.reference
            )));
        };
        if req.amount != amount {
            return Err(Error::invalid("a capture must be for the amount that was authorised"));
        }
        st.calls.push(SandboxCall::Capture {
            idempotency_key: req.idempotency_key.clone(),
            reference: req.reference.clone(),
            replayed: false,
        });
        if !approved {
            // Not an answer to keep: the buyer may still approve, and the
            // next capture under this key must see it.
            return Ok(ChargeOutcome::RequiresAction {
                continue_url: self.continue_url(&req.reference),
                reference: req.reference.clone(),
            });
        }
        st.pending.remove(&req.reference);
        let outcome = ChargeOutcome::Succeeded { reference: req.reference.clone() };
        st.charged.insert(req.reference.clone(), req.amount);
        st.status.insert(req.reference.clone(), PaymentStatus::Succeeded);
        // The charge's key now finds the captured payment, as a processor's
        // lookup of the payment would.
        st.charges_by_key.insert(charge_key, outcome.clone());
        st.captures_by_key.insert(req.idempotency_key.clone(), outcome.clone());
        Ok(outcome)
    }

    async fn approve_action(&self, reference: &str) -> Result<()> {
        let mut st = self.lock();
        if let Some(p) = st.pending.get_mut(reference) {
            p.approved = true;
            st.status.insert(reference.to_owned(), PaymentStatus::Authorized);
            return Ok(());
        }
        // Already captured: approving again changes nothing.
        if st.charged.contains_key(reference) {
            return Ok(());
        }
        Err(Error::not_found(format!("no payment {reference} waits for approval")))
    }

    async fn refund(&self, req: &RefundRequest) -> Result<String> {
        let mut st = self.lock();
        if let Some(prior) = st.refunds_by_key.get(&req.idempotency_key).cloned() {
            st.calls.push(SandboxCall::Refund {
                idempotency_key: req.idempotency_key.clone(),
                charge_reference: req.charge_reference.clone(),
                amount: req.amount,
                replayed: true,
            });
            return Ok(prior);
        }
        let charged = st
            .charged
            .get(&req.charge_reference)
            .copied()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, "no such charge"))?;
        let already = st.refunded.get(&req.charge_reference).copied().unwrap_or(0);
        if req.amount.currency() != charged.currency()
            || req.amount.minor() <= 0
            || already + req.amount.minor() > charged.minor()
        {
            return Err(Error::invalid("the refund exceeds what was charged"));
        }
        st.next += 1;
        let reference = format!("sbx_re_{:08}", st.next);
        st.refunded.insert(req.charge_reference.clone(), already + req.amount.minor());
        if already + req.amount.minor() == charged.minor() {
            st.status.insert(req.charge_reference.clone(), PaymentStatus::Refunded);
        }
        st.refunds_by_key.insert(req.idempotency_key.clone(), reference.clone());
        st.calls.push(SandboxCall::Refund {
            idempotency_key: req.idempotency_key.clone(),
            charge_reference: req.charge_reference.clone(),
            amount: req.amount,
            replayed: false,
        });
        Ok(reference)
    }

    async fn status(&self, reference: &str) -> Result<PaymentStatus> {
        Ok(self.lock().status.get(reference).copied().unwrap_or(PaymentStatus::Unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CheckoutId, Currency, OrderId};

    fn req(key: &str, token: &str, amount: i64) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.into(),
            amount: Money::new(amount, Currency::usd()),
            token: token.into(),
            checkout_id: CheckoutId::from_uuid(uuid::Uuid::nil()),
            order_id: OrderId::from_uuid(uuid::Uuid::nil()),
        }
    }

    #[tokio::test]
    async fn tokens_decide_outcomes() {
        let p = SandboxPayments::new("http://127.0.0.1:8080");
        let cases = [
            ("success_token", "succeeded"),
            (SLOW_SUCCESS_TOKEN, "succeeded"),
            ("fail_token", "card_declined"),
            ("insufficient_funds", "insufficient_funds"),
            ("requires_action", "requires_action"),
            ("tok_made_up", "unknown_token"),
        ];
        for (i, (token, want)) in cases.into_iter().enumerate() {
            let got = match p.charge(&req(&format!("k{i}"), token, 100)).await.unwrap() {
                ChargeOutcome::Succeeded { .. } => "succeeded".to_owned(),
                ChargeOutcome::RequiresAction { continue_url, .. } => {
                    assert!(continue_url.starts_with("http://127.0.0.1:8080/"));
                    "requires_action".to_owned()
                }
                ChargeOutcome::Declined { reason } => reason,
            };
            assert_eq!(got, want, "{token}");
        }
        // The two success tokens moved money; every token was one attempt.
        assert_eq!(p.successful_charges(), 2);
        assert_eq!(p.charge_attempts(), 6);
    }

    #[tokio::test]
    async fn a_repeated_key_charges_once() {
        let p = SandboxPayments::new("http://x");
        let a = p.charge(&req("same", "success_token", 500)).await.unwrap();
        let b = p.charge(&req("same", "success_token", 500)).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(p.successful_charges(), 1);
        assert_eq!(p.calls().len(), 2);
        assert_eq!(p.find_charge("same").await.unwrap(), Some(a.clone()), "found by its key");
        assert_eq!(p.find_charge("other").await.unwrap(), None, "an unseen key is no charge");
        assert_eq!(p.calls().len(), 2, "a lookup is not a call");
        let ChargeOutcome::Succeeded { reference } = a else { panic!("expected success") };
        let refund = RefundRequest {
            idempotency_key: "r1".into(),
            charge_reference: reference.clone(),
            amount: Money::new(500, Currency::usd()),
            reason: "test".into(),
        };
        let r1 = p.refund(&refund).await.unwrap();
        assert_eq!(p.refund(&refund).await.unwrap(), r1, "refund replays too");
        assert_eq!(p.status(&reference).await.unwrap(), PaymentStatus::Refunded);
        let over = RefundRequest { idempotency_key: "r2".into(), ..refund };
        assert!(p.refund(&over).await.is_err(), "cannot refund twice the amount");
    }

    #[tokio::test]
    async fn an_action_is_captured_only_after_approval() {
        let p = SandboxPayments::new("http://gw");
        let ChargeOutcome::RequiresAction { reference, continue_url } =
            p.charge(&req("k", "requires_action", 700)).await.unwrap()
        else {
            panic!("expected an action")
        };
        assert_eq!(continue_url, format!("http://gw/sandbox/authenticate/{reference}"));
        let capture = |key: &str, amount: i64| CaptureRequest {
            idempotency_key: key.into(),
            reference: reference.clone(),
            amount: Money::new(amount, Currency::usd()),
        };
        // Before approval: still waiting, nothing moved, and the same key
        // can be tried again later.
        let early = p.capture(&capture("c", 700)).await.unwrap();
        assert!(matches!(early, ChargeOutcome::RequiresAction { .. }), "{early:?}");
        assert_eq!(p.status(&reference).await.unwrap(), PaymentStatus::RequiresAction);
        assert!(p.capture(&capture("c", 701)).await.is_err(), "not more than authorised");
        assert!(p.approve_action("sbx_ch_nope").await.is_err());
        p.approve_action(&reference).await.unwrap();
        assert_eq!(p.status(&reference).await.unwrap(), PaymentStatus::Authorized);
        assert_eq!(p.successful_charges(), 0, "approval alone moves no money");
        let done = p.capture(&capture("c", 700)).await.unwrap();
        assert_eq!(done, ChargeOutcome::Succeeded { reference: reference.clone() });
        assert_eq!(p.capture(&capture("c", 700)).await.unwrap(), done, "a replay");
        assert_eq!(p.successful_charges(), 1);
        assert_eq!(p.find_charge("k").await.unwrap(), Some(done), "the charge key finds it");
        p.approve_action(&reference).await.unwrap();
        assert_eq!(p.successful_charges(), 1, "approving again moves nothing");
    }
}
