use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

/// Per-device token buckets: `rate` tokens per second sustained, `burst` at once. A token
/// is a request, or (the key-package claim budget) a key package handed out.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    clock: Arc<dyn Clock>,
    /// Tokens left and when they were counted (Unix ms, from `clock`).
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64, clock: Arc<dyn Clock>) -> Self {
        Self {
            rate,
            burst,
            clock,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn allow(&self, key: &str) -> bool {
        self.take(key, 1)
    }

    /// Takes `n` tokens for `key` at once, or none (false) when fewer are left.
    pub fn take(&self, key: &str, n: usize) -> bool {
        let n = n as f64;
        let now = self.clock.now_millis();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        // A clock set backwards refills nothing rather than draining the bucket.
        let elapsed = (now - *last).max(0) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now.max(*last);
        if *tokens >= n {
            *tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn burst_then_refuse_per_key() {
        let limiter = RateLimiter::new(0.0, 3.0, Arc::new(ManualClock::new(0)));
        assert!((0..3).all(|_| limiter.allow("a")));
        assert!(!limiter.allow("a"));
        assert!(limiter.allow("b"), "another device has its own bucket");
    }

    #[test]
    fn takes_several_tokens_or_none() {
        let clock = Arc::new(ManualClock::new(0));
        let limiter = RateLimiter::new(1.0, 5.0, clock.clone());
        assert!(limiter.take("a", 3));
        assert!(!limiter.take("a", 3), "two left: three are refused whole");
        assert!(limiter.take("a", 2), "and the refusal took none");
        assert!(!limiter.take("a", 1));
        clock.advance(2_000);
        assert!(limiter.take("a", 2));
        assert!(!limiter.take("a", 6), "never more than the burst");
    }

    #[test]
    fn refills_at_the_rate_as_the_clock_moves() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let limiter = RateLimiter::new(2.0, 4.0, clock.clone());
        assert!((0..4).all(|_| limiter.allow("a")));
        assert!(!limiter.allow("a"), "the burst is spent");
        clock.advance(499);
        assert!(
            !limiter.allow("a"),
            "less than one token back after 499 ms at 2/s"
        );
        clock.advance(1);
        assert!(limiter.allow("a"), "one token back after 500 ms");
        assert!(!limiter.allow("a"));
        clock.advance(60_000);
        assert_eq!(
            (0..10).filter(|_| limiter.allow("a")).count(),
            4,
            "a long pause refills up to the burst, never beyond"
        );
    }
}
