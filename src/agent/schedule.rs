//! When to renew, when to fetch new credentials, how long to back off.
//!
//! Pure arithmetic, so it is tested without clocks. Randomness comes in as `r` in [0, 1)
//! (the caller draws it), which keeps the functions deterministic under test. Jitter only
//! ever makes a deadline *earlier*: a late renewal can lose a lease, an early one cannot.

use std::time::Duration;

/// Delay before renewing a lease (or token) granted for `ttl`: `renew_fraction` of it,
/// minus up to `jitter` of that. Vault's agent renews at about two thirds; the jitter keeps
/// three replicas that started together from renewing in the same instant.
pub fn renew_delay(ttl: Duration, renew_fraction: f64, jitter: f64, r: f64) -> Duration {
    ttl.mul_f64(renew_fraction * (1.0 - jitter * r))
}

/// Delay before fetching new credentials when `remaining` is left until the lease's hard end
/// (its max TTL, or the end of a lease that cannot be renewed): `threshold` of it, minus up
/// to `jitter / 2` of that (the margin left must stay a margin).
pub fn rotate_delay(remaining: Duration, threshold: f64, jitter: f64, r: f64) -> Duration {
    remaining.mul_f64(threshold * (1.0 - jitter / 2.0 * r))
}

/// Delay before retry number `attempt` (0 for the first): doubling from `min`, capped at
/// `max`, with "equal jitter" (half fixed, half random) so retries of many agents spread.
pub fn backoff(attempt: u32, min: Duration, max: Duration, r: f64) -> Duration {
    let exp = min.saturating_mul(2u32.saturating_pow(attempt.min(20)));
    let capped = exp.min(max);
    capped.mul_f64(0.5 + 0.5 * r)
}

/// Delay before re-reading static credentials whose password turns over in `ttl` seconds:
/// one second after the rotation, as Vault's agent does.
pub fn static_refresh_delay(ttl: u64) -> Duration {
    Duration::from_secs(ttl + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn renewal_lands_between_sixty_and_sixty_seven_percent() {
        let earliest = renew_delay(HOUR, 2.0 / 3.0, 0.1, 0.999_999);
        let latest = renew_delay(HOUR, 2.0 / 3.0, 0.1, 0.0);
        assert_eq!(latest.as_secs(), 2400);
        assert_eq!(earliest.as_secs(), 2160);
        assert!(renew_delay(HOUR, 2.0 / 3.0, 0.0, 0.5) == latest);
    }

    #[test]
    fn rotation_keeps_at_least_the_threshold_margin() {
        let remaining = Duration::from_secs(1000);
        assert_eq!(rotate_delay(remaining, 0.9, 0.1, 0.0).as_secs(), 900);
        let early = rotate_delay(remaining, 0.9, 0.1, 0.999_999);
        assert!(early.as_secs() >= 855 && early.as_secs() < 900, "{early:?}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(0, min, max, 1.0), min);
        assert_eq!(backoff(3, min, max, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(30, min, max, 1.0), max);
        assert_eq!(backoff(30, min, max, 0.0), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX, min, max, 1.0), max);
    }

    #[test]
    fn static_credentials_are_read_a_second_after_rotation() {
        assert_eq!(static_refresh_delay(59), Duration::from_secs(60));
        assert_eq!(static_refresh_delay(0), Duration::from_secs(1));
    }
}
