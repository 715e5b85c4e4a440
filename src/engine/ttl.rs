//! Vault's TTL arithmetic (`CalculateTTL`) and duration formatting.

use super::error::{Result, invalid};

/// Vault's default and maximum lease TTL for a mount: 768 hours.
pub const DEFAULT_MOUNT_TTL: i64 = 768 * 3600;

/// Inputs of a TTL calculation, all in seconds (0 means unset).
#[derive(Debug, Clone, Copy, Default)]
pub struct TtlInputs {
    /// Requested increment (renewals).
    pub increment: i64,
    /// The role's default TTL.
    pub backend_ttl: i64,
    /// The role's max TTL.
    pub backend_max_ttl: i64,
    /// The mount's default lease TTL.
    pub mount_default_ttl: i64,
    /// The mount's max lease TTL.
    pub mount_max_ttl: i64,
}

/// Computes a lease TTL as Vault does: the TTL is the increment, else the role default,
/// else the mount default; it is capped so that `start + max_ttl` is never passed.
/// Returns the TTL and the warning Vault adds when capping.
pub fn calculate(inputs: TtlInputs, start: i64, now: i64) -> Result<(i64, Option<String>)> {
    let mount_max = if inputs.mount_max_ttl > 0 {
        inputs.mount_max_ttl
    } else {
        DEFAULT_MOUNT_TTL
    };
    let max_ttl = if inputs.backend_max_ttl > 0 && inputs.backend_max_ttl < mount_max {
        inputs.backend_max_ttl
    } else {
        mount_max
    };
    let mut ttl = if inputs.increment > 0 {
        inputs.increment
    } else if inputs.backend_ttl > 0 {
        inputs.backend_ttl
    } else if inputs.mount_default_ttl > 0 {
        inputs.mount_default_ttl
    } else {
        DEFAULT_MOUNT_TTL
    };
    // Saturating: a mount's `max_lease_ttl` may be any non-negative number of seconds.
    let remaining = start.saturating_add(max_ttl).saturating_sub(now);
    if remaining <= 0 {
        return Err(invalid("past the max TTL, cannot renew"));
    }
    let mut warning = None;
    if ttl > remaining {
        warning = Some(format!(
            "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
            format_duration(ttl),
            format_duration(remaining)
        ));
        ttl = remaining;
    }
    Ok((ttl, warning))
}

/// Formats seconds like Go's `time.Duration` (`1h0m0s`, `9m58s`, `30s`).
pub fn format_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cascade() {
        let i = TtlInputs {
            backend_ttl: 3600,
            backend_max_ttl: 86400,
            ..Default::default()
        };
        assert_eq!(calculate(i, 0, 0).unwrap(), (3600, None));
        let i = TtlInputs::default();
        assert_eq!(calculate(i, 0, 0).unwrap().0, DEFAULT_MOUNT_TTL);
        let i = TtlInputs {
            mount_default_ttl: 60,
            ..Default::default()
        };
        assert_eq!(calculate(i, 0, 0).unwrap().0, 60);
    }

    #[test]
    fn increment_is_capped_at_issue_plus_max() {
        let i = TtlInputs {
            increment: 3600,
            backend_ttl: 60,
            backend_max_ttl: 600,
            ..Default::default()
        };
        let (ttl, warning) = calculate(i, 1000, 1002).unwrap();
        assert_eq!(ttl, 598);
        assert_eq!(
            warning.unwrap(),
            "TTL of \"1h0m0s\" exceeded the effective max_ttl of \"9m58s\"; TTL value is capped accordingly"
        );
        assert!(calculate(i, 1000, 1600).is_err());
    }

    /// Found by the `field_coercion` fuzz target: a mount tuned to `max_lease_ttl =
    /// 9223372036854775807` overflowed `start + max_ttl` (a panic in debug builds; in release
    /// builds the sum wrapped and every request was refused as past its max TTL).
    #[test]
    fn huge_max_ttl_does_not_overflow() {
        let i = TtlInputs {
            backend_ttl: 3600,
            mount_max_ttl: i64::MAX,
            ..Default::default()
        };
        assert_eq!(
            calculate(i, 1_700_000_000, 1_700_000_100).unwrap(),
            (3600, None)
        );
        let i = TtlInputs {
            increment: i64::MAX,
            backend_max_ttl: i64::MAX,
            mount_max_ttl: i64::MAX,
            ..Default::default()
        };
        let (ttl, warning) = calculate(i, 1_700_000_000, 1_700_000_000).unwrap();
        assert_eq!(ttl, i64::MAX - 1_700_000_000);
        assert!(warning.is_some());
    }

    #[test]
    fn role_max_above_mount_max_uses_mount_max() {
        let i = TtlInputs {
            backend_ttl: 10,
            backend_max_ttl: 1000,
            mount_max_ttl: 100,
            ..Default::default()
        };
        let (ttl, _) = calculate(
            TtlInputs {
                increment: 500,
                ..i
            },
            0,
            0,
        )
        .unwrap();
        assert_eq!(ttl, 100);
    }
}
