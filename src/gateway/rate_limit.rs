//! Per-caller rate limits by tool class.
//!
//! Every transport classifies what it is asked to do (an HTTP route, an MCP
//! tool) into a [`ToolClass`] and asks [`RateLimiter::check`] before doing
//! it, keyed by who is asking. Each class has its own keyed GCRA limiter, so
//! a caller that floods checkout spends only its own checkout budget: other
//! callers, and the same caller's catalog reads, are untouched.
//!
//! Memory is bounded: idle keys are forgotten every so often
//! (`retain_recent`), and if a flood of fresh identities still fills the map
//! past `max_tracked_callers`, the class starts over with an empty map. That
//! forgives the callers it held, which is the lesser harm next to running
//! out of memory.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::domain::{Error, ErrorCode};
use crate::settings::{RateBudget, RateLimits};

/// What a call does, for the purpose of how often it may be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolClass {
    /// Catalog searches and lookups, reads of carts, checkouts and orders.
    Catalog,
    /// Creating and changing carts.
    Cart,
    /// Creating, updating and cancelling checkouts.
    CheckoutWrite,
    /// Completing a checkout: the call that moves money.
    CheckoutComplete,
}

impl ToolClass {
    pub const ALL: [ToolClass; 4] =
        [Self::Catalog, Self::Cart, Self::CheckoutWrite, Self::CheckoutComplete];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Catalog => "catalog",
            Self::Cart => "cart",
            Self::CheckoutWrite => "checkout_write",
            Self::CheckoutComplete => "checkout_complete",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Catalog => 0,
            Self::Cart => 1,
            Self::CheckoutWrite => 2,
            Self::CheckoutComplete => 3,
        }
    }
}

/// The identity a request's budget is kept under, put into the request's
/// extensions by the HTTP edge so the MCP tool wrapper spends the same
/// budget as REST for the same caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateKey(pub String);

/// How many checks pass between two sweeps of idle keys.
const SWEEP_EVERY: u64 = 4096;

struct ClassLimiter {
    quota: Quota,
    limiter: RwLock<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl ClassLimiter {
    fn new(budget: RateBudget) -> Self {
        // Settings validation keeps both numbers at least 1; the fallbacks
        // only make that explicit without a panic path.
        let per_minute = NonZeroU32::new(budget.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(budget.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self { quota, limiter: RwLock::new(Arc::new(DefaultKeyedRateLimiter::keyed(quota))) }
    }

    fn current(&self) -> Arc<DefaultKeyedRateLimiter<String>> {
        // A poisoned lock only means another thread panicked while
        // swapping in a fresh map; the Arc inside is still whole.
        match self.limiter.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn sweep(&self, max: usize) {
        let current = self.current();
        current.retain_recent();
        current.shrink_to_fit();
        if current.len() > max {
            tracing::warn!(tracked = current.len(), max, "rate limiter forgot its callers");
            let fresh = Arc::new(DefaultKeyedRateLimiter::keyed(self.quota));
            match self.limiter.write() {
                Ok(mut guard) => *guard = fresh,
                Err(poisoned) => *poisoned.into_inner() = fresh,
            }
        }
    }
}

/// The keyed limiters of all classes.
pub struct RateLimiter {
    enabled: bool,
    classes: [ClassLimiter; 4],
    max_tracked: usize,
    checks: AtomicU64,
}

impl RateLimiter {
    pub fn new(settings: &RateLimits) -> Self {
        Self {
            enabled: settings.enabled,
            classes: [
                ClassLimiter::new(settings.catalog),
                ClassLimiter::new(settings.cart),
                ClassLimiter::new(settings.checkout_write),
                ClassLimiter::new(settings.checkout_complete),
            ],
            max_tracked: settings.max_tracked_callers,
            checks: AtomicU64::new(0),
        }
    }

    /// Spends one call of `class` for `key`, or says how long to wait: a
    /// `rate_limited` error with `retry_after` in whole seconds (at least 1,
    /// since `Retry-After` cannot say less).
    pub fn check(&self, class: ToolClass, key: &str) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        let limiter = &self.classes[class.index()];
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for c in &self.classes {
                c.sweep(self.max_tracked);
            }
        }
        let current = limiter.current();
        match current.check_key(&key.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(Error::new(
                    ErrorCode::RateLimited,
                    format!("too many {} calls; retry later", class.as_str()),
                )
                .with_retry_after(secs.max(1)))
            }
        }
    }

    /// How many callers `class` currently remembers.
    pub fn tracked(&self, class: ToolClass) -> usize {
        self.classes[class.index()].current().len()
    }

    /// Forgets idle callers now (tests, and a periodic sweep if wanted).
    pub fn sweep(&self) {
        for c in &self.classes {
            c.sweep(self.max_tracked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32) -> RateLimits {
        let b = RateBudget { per_minute: 1, burst };
        RateLimits {
            enabled: true,
            catalog: RateBudget { per_minute: 600, burst: 100 },
            cart: b,
            checkout_write: b,
            checkout_complete: b,
            max_tracked_callers: 3,
        }
    }

    #[test]
    fn one_callers_flood_leaves_others_and_other_classes_alone() {
        let rl = RateLimiter::new(&limits(2));
        assert!(rl.check(ToolClass::CheckoutComplete, "a").is_ok());
        assert!(rl.check(ToolClass::CheckoutComplete, "a").is_ok());
        let err = rl.check(ToolClass::CheckoutComplete, "a").unwrap_err();
        assert_eq!(err.code(), ErrorCode::RateLimited);
        assert!(err.retry_after().unwrap_or(0) >= 1);
        assert!(rl.check(ToolClass::CheckoutComplete, "b").is_ok());
        assert!(rl.check(ToolClass::Catalog, "a").is_ok());
    }

    #[test]
    fn the_key_map_stays_bounded() {
        let rl = RateLimiter::new(&limits(1));
        for i in 0..10 {
            let _ = rl.check(ToolClass::Cart, &format!("k{i}"));
        }
        assert_eq!(rl.tracked(ToolClass::Cart), 10);
        rl.sweep();
        assert!(rl.tracked(ToolClass::Cart) <= 3);
    }

    #[test]
    fn disabled_limits_allow_everything() {
        let mut l = limits(1);
        l.enabled = false;
        let rl = RateLimiter::new(&l);
        for _ in 0..10 {
            assert!(rl.check(ToolClass::CheckoutComplete, "a").is_ok());
        }
    }
}
