//! Rotation schedules: a fixed period, or a cron expression (UTC) with an optional window.
//!
//! `rotation_schedule` takes standard 5-field cron (`minute hour day-of-month month
//! day-of-week`, Vault's syntax) and, as an extension, a 6-field form with a leading seconds
//! field. Parsing is done by the `cron` crate, which follows Quartz, so two differences from
//! standard cron are bridged here rather than exposed to users:
//! - day-of-week numbers: standard cron counts Sunday as 0 (or 7), Quartz as 1;
//! - a schedule restricting both day-of-month and day-of-week fires when *either* matches
//!   (standard cron), where Quartz requires both.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

use super::error::{Result, invalid};

/// The shortest rotation period Vault accepts.
pub const MIN_PERIOD: i64 = 5;
/// The shortest rotation window Vault accepts.
pub const MIN_WINDOW: i64 = 3600;

/// When a credential rotates.
#[derive(Debug, Clone)]
pub enum RotationSchedule {
    /// Every `n` seconds after the last rotation.
    Period(i64),
    /// At the times a cron expression names, within `window` seconds (0: no window).
    Cron {
        /// The expression as the user wrote it.
        source: String,
        /// Alternatives whose earliest next time is the schedule's next time (two when both
        /// day fields are restricted, to get standard cron's "either" rule).
        alternatives: Vec<cron::Schedule>,
        /// Seconds after a scheduled time during which the rotation may still run.
        window: i64,
    },
}

impl RotationSchedule {
    /// Validates Vault's fields: exactly one of period and schedule; window only with a schedule.
    pub fn from_fields(
        period: Option<i64>,
        schedule: Option<&str>,
        window: Option<i64>,
    ) -> Result<Option<Self>> {
        let schedule = schedule.map(str::trim).filter(|s| !s.is_empty());
        let period = period.filter(|p| *p != 0);
        match (period, schedule) {
            (Some(_), Some(_)) => Err(invalid(
                "mutually exclusive fields rotation_period and rotation_schedule were both specified; only one of them can be provided",
            )),
            (Some(_), None) if window.is_some_and(|w| w != 0) => Err(invalid(
                "rotation_window is invalid with use of rotation_period",
            )),
            (Some(p), None) if p < MIN_PERIOD => {
                Err(invalid("rotation_period must be 5 seconds or more"))
            }
            (Some(p), None) => Ok(Some(RotationSchedule::Period(p))),
            (None, Some(expr)) => {
                let window = window.unwrap_or(0);
                if window != 0 && window < MIN_WINDOW {
                    return Err(invalid(
                        "rotation_window must be 3600 seconds (1 hour) or more",
                    ));
                }
                Ok(Some(Self::parse_cron(expr, window)?))
            }
            (None, None) if window.is_some_and(|w| w != 0) => {
                Err(invalid("rotation_window requires rotation_schedule"))
            }
            (None, None) => Ok(None),
        }
    }

    fn parse_cron(expr: &str, window: i64) -> Result<Self> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(invalid(format!(
                    "could not parse rotation_schedule \"{expr}\": expected 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; found {n}"
                )));
            }
        };
        let (minute, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        let dow = translate_day_of_week(dow)
            .map_err(|e| invalid(format!("could not parse rotation_schedule \"{expr}\": {e}")))?;
        let restricted = |f: &str| f != "*" && f != "?";
        let build = |dom: &str, dow: &str| -> Result<cron::Schedule> {
            cron::Schedule::from_str(&format!("{seconds} {minute} {hour} {dom} {month} {dow}"))
                .map_err(|e| invalid(format!("could not parse rotation_schedule \"{expr}\": {e}")))
        };
        let alternatives = if restricted(dom) && restricted(&dow) {
            vec![build(dom, "*")?, build("*", &dow)?]
        } else {
            vec![build(dom, &dow)?]
        };
        Ok(RotationSchedule::Cron {
            source: expr.to_owned(),
            alternatives,
            window,
        })
    }

    /// The next rotation after `last` (the last rotation, or now for a new schedule).
    pub fn next_after(&self, last: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            RotationSchedule::Period(p) => last + Duration::seconds(*p),
            RotationSchedule::Cron { alternatives, .. } => alternatives
                .iter()
                .filter_map(|s| s.after(&last).next())
                .min()
                // An expression that never fires again (a past year): never rotate.
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Whether a rotation due at `scheduled` may still run at `now`: outside the window it
    /// is skipped until the next scheduled time, as Vault does.
    pub fn within_window(&self, scheduled: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self {
            RotationSchedule::Cron { window, .. } if *window > 0 => {
                now <= scheduled + Duration::seconds(*window)
            }
            _ => true,
        }
    }
}

/// Rewrites a standard cron day-of-week field (Sunday = 0 or 7) for the `cron` crate
/// (Sunday = 1). Names pass through; ranges ending on Sunday (`5-7`) are split.
fn translate_day_of_week(field: &str) -> std::result::Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let map = |n: &str| -> std::result::Result<Option<u32>, String> {
        if n.chars().all(|c| c.is_ascii_alphabetic()) {
            return Ok(None);
        }
        let v: u32 = n
            .parse()
            .map_err(|_| format!("invalid day of week \"{n}\""))?;
        match v {
            0..=6 => Ok(Some(v + 1)),
            7 => Ok(Some(1)),
            _ => Err(format!("day of week {v} is out of range 0-7")),
        }
    };
    let mut parts = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let step_suffix = step.map(|s| format!("/{s}")).unwrap_or_default();
        match range.split_once('-') {
            // `0-7` is every day; `x-7` runs to Saturday and on to Sunday, which the
            // `cron` crate (Sunday = 1) can only express as two parts.
            Some(("0", "7")) => parts.push(format!("1-7{step_suffix}")),
            Some((a, "7")) if map(a)?.is_some() => {
                if step.is_some() {
                    return Err(format!(
                        "day-of-week range \"{part}\" ending on Sunday cannot take a step"
                    ));
                }
                parts.push(format!("{}-7", map(a)?.unwrap_or(1)));
                parts.push("1".to_owned());
            }
            Some((a, b)) => match (map(a)?, map(b)?) {
                (Some(a), Some(b)) => parts.push(format!("{a}-{b}{step_suffix}")),
                _ => parts.push(part.to_owned()),
            },
            None if range == "*" => parts.push(format!("*{step_suffix}")),
            None => match map(range)? {
                Some(v) => parts.push(format!("{v}{step_suffix}")),
                None => parts.push(part.to_owned()),
            },
        }
    }
    Ok(parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn cron(expr: &str) -> RotationSchedule {
        RotationSchedule::from_fields(None, Some(expr), None)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn vault_field_rules() {
        let both = RotationSchedule::from_fields(Some(10), Some("0 * * * *"), None).unwrap_err();
        assert!(both.to_string().contains("mutually exclusive"));
        assert!(
            RotationSchedule::from_fields(Some(4), None, None)
                .unwrap_err()
                .to_string()
                .contains("5 seconds")
        );
        assert!(
            RotationSchedule::from_fields(Some(10), None, Some(3600))
                .unwrap_err()
                .to_string()
                .contains("rotation_window is invalid")
        );
        assert!(RotationSchedule::from_fields(None, Some("0 * * * *"), Some(60)).is_err());
        assert!(RotationSchedule::from_fields(None, Some("0 * * *"), None).is_err());
        assert!(RotationSchedule::from_fields(None, Some("0 * * * 9"), None).is_err());
        assert!(
            RotationSchedule::from_fields(None, None, None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn five_field_cron_is_standard_cron() {
        // Every hour on the hour (the cron crate alone rejects this 5-field form).
        assert_eq!(
            cron("0 * * * *").next_after(at(2026, 1, 1, 10, 15, 0)),
            at(2026, 1, 1, 11, 0, 0)
        );
        // Sunday is 0 and 7, as in standard cron. 2026-01-04 is a Sunday.
        for expr in ["30 2 * * 0", "30 2 * * 7", "30 2 * * SUN"] {
            let next = cron(expr).next_after(at(2026, 1, 1, 0, 0, 0));
            assert_eq!(next, at(2026, 1, 4, 2, 30, 0), "{expr}");
        }
        // Monday to Friday.
        let weekdays = cron("0 9 * * 1-5");
        let mut t = at(2026, 1, 2, 10, 0, 0); // a Friday, after 09:00
        t = weekdays.next_after(t);
        assert_eq!(t.weekday(), Weekday::Mon);
        // Friday to Sunday (a range ending on Sunday).
        let weekend = cron("0 0 * * 5-7");
        let days: Vec<Weekday> = (0..3)
            .scan(at(2026, 1, 5, 0, 0, 0), |t, _| {
                *t = weekend.next_after(*t);
                Some(t.weekday())
            })
            .collect();
        assert_eq!(days, vec![Weekday::Fri, Weekday::Sat, Weekday::Sun]);
    }

    #[test]
    fn day_of_week_translation() {
        assert_eq!(translate_day_of_week("0").unwrap(), "1");
        assert_eq!(translate_day_of_week("1-5").unwrap(), "2-6");
        assert_eq!(translate_day_of_week("0-7").unwrap(), "1-7");
        assert_eq!(translate_day_of_week("5-7").unwrap(), "6-7,1");
        assert_eq!(translate_day_of_week("*/2").unwrap(), "*/2");
        assert_eq!(translate_day_of_week("0-6/2").unwrap(), "1-7/2");
        assert_eq!(translate_day_of_week("MON-FRI").unwrap(), "MON-FRI");
        assert_eq!(translate_day_of_week("0,3,7").unwrap(), "1,4,1");
        assert!(translate_day_of_week("8").is_err());
        assert!(translate_day_of_week("5-7/2").is_err());
    }

    #[test]
    fn both_day_fields_mean_either() {
        // The 13th of the month or any Friday.
        let s = cron("0 0 13 * 5");
        assert_eq!(
            s.next_after(at(2026, 1, 1, 0, 0, 0)),
            at(2026, 1, 2, 0, 0, 0)
        ); // Friday the 2nd
        assert_eq!(
            s.next_after(at(2026, 1, 12, 0, 0, 0)),
            at(2026, 1, 13, 0, 0, 0)
        ); // Tuesday the 13th
    }

    #[test]
    fn six_fields_take_seconds() {
        let s = cron("*/2 * * * * *");
        let next = s.next_after(at(2026, 1, 1, 0, 0, 1));
        assert_eq!(next, at(2026, 1, 1, 0, 0, 2));
        assert_eq!(next.second() % 2, 0);
    }

    #[test]
    fn windows_and_periods() {
        let s = RotationSchedule::from_fields(None, Some("0 0 * * *"), Some(3600))
            .unwrap()
            .unwrap();
        let due = at(2026, 1, 1, 0, 0, 0);
        assert!(s.within_window(due, due + Duration::minutes(59)));
        assert!(!s.within_window(due, due + Duration::minutes(61)));
        let p = RotationSchedule::Period(30);
        assert_eq!(p.next_after(due), due + Duration::seconds(30));
        assert!(p.within_window(due, due + Duration::days(3)));
    }
}
