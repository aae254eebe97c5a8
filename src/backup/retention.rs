//! Which backups to keep: grandfather-father-son. The newest backup of
//! each of the `daily` most recent days that have a backup, of each of the
//! `weekly` most recent ISO weeks, and of each of the `monthly` most recent
//! months, are kept; so are the newest backup and the newest verified one.
//! Days, weeks and months without backups do not count. Everything else
//! expires.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::spec::Retention;

/// A backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub at: SystemTime,
    /// Whether its last verification succeeded.
    pub verified: bool,
}

/// The decision for one backup, with the reason shown by `plan` and
/// `backup create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    /// "kept: monthly 2026-10", "expired: daily > 7", …
    pub reason: String,
}

/// A UTC calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i64,
    pub month: u32,
    pub day: u32,
}

impl Date {
    pub fn of(at: SystemTime) -> Self {
        let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64);
        Self::from_days(seconds.div_euclid(86_400))
    }

    /// Days since 1970-01-01 to a date (H. Hinnant's civil_from_days).
    fn from_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date { year, month, day }
    }

    fn days(self) -> i64 {
        let year = self.year - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let yoe = year - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The ISO 8601 week: (week-numbering year, week 1–53).
    pub fn iso_week(self) -> (i64, u32) {
        let days = self.days();
        // 1970-01-01 was a Thursday; Monday = 0.
        let weekday = (days + 3).rem_euclid(7);
        let thursday = Date::from_days(days - weekday + 3);
        let first = Date { year: thursday.year, month: 1, day: 1 }.days();
        (thursday.year, ((thursday.days() - first) / 7 + 1) as u32)
    }
}

/// Decides, for every backup, whether it is kept and why.
pub fn decide(backups: &[Candidate], retention: &Retention) -> Vec<Decision> {
    let mut newest_first: Vec<&Candidate> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));

    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut pick = |label: &str, limit: u32, period: &dyn Fn(&Candidate) -> String| {
        let mut seen = BTreeSet::new();
        for backup in &newest_first {
            let key = period(backup);
            if seen.contains(&key) {
                continue;
            }
            if seen.len() as u32 >= limit {
                break;
            }
            reasons.entry(backup.id.as_str()).or_default().push(format!("{label} {key}"));
            seen.insert(key);
        }
    };
    pick("daily", retention.daily, &|backup| {
        let date = Date::of(backup.at);
        format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
    });
    pick("weekly", retention.weekly, &|backup| {
        let (year, week) = Date::of(backup.at).iso_week();
        format!("{year:04}-W{week:02}")
    });
    pick("monthly", retention.monthly, &|backup| {
        let date = Date::of(backup.at);
        format!("{:04}-{:02}", date.year, date.month)
    });
    if let Some(newest) = newest_first.first() {
        reasons.entry(newest.id.as_str()).or_default().push("newest".into());
    }
    if let Some(verified) = newest_first.iter().find(|backup| backup.verified) {
        reasons.entry(verified.id.as_str()).or_default().push("newest verified".into());
    }

    newest_first
        .iter()
        .map(|backup| match reasons.get(backup.id.as_str()) {
            Some(why) => Decision { id: backup.id.clone(), keep: true, reason: format!("kept: {}", why.join(", ")) },
            None => Decision {
                id: backup.id.clone(),
                keep: false,
                reason: format!(
                    "expired: beyond daily {} / weekly {} / monthly {}, or not the newest of its day",
                    retention.daily, retention.weekly, retention.monthly
                ),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).expect("time")
    }

    #[test]
    fn calendar_and_iso_weeks() {
        assert_eq!(Date::of(at("2026-12-03T06:00:00Z")), Date { year: 2026, month: 12, day: 3 });
        assert_eq!(Date::of(at("2000-02-29T23:59:59Z")), Date { year: 2000, month: 2, day: 29 });
        // ISO weeks at year ends.
        assert_eq!(Date { year: 2026, month: 12, day: 3 }.iso_week(), (2026, 49));
        assert_eq!(Date { year: 2021, month: 1, day: 3 }.iso_week(), (2020, 53));
        assert_eq!(Date { year: 2024, month: 12, day: 30 }.iso_week(), (2025, 1));
        assert_eq!(Date { year: 2026, month: 1, day: 1 }.iso_week(), (2026, 1));
    }

    #[test]
    fn a_month_of_nightlies() {
        let backups: Vec<Candidate> = (1..=30)
            .map(|day| Candidate {
                id: format!("d{day:02}"),
                at: at(&format!("2026-11-{day:02}T02:00:00Z")),
                verified: false,
            })
            .collect();
        let decisions = decide(&backups, &Retention { daily: 7, weekly: 4, monthly: 3 });
        let kept: Vec<&str> = decisions.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect();
        // 7 days (24–30); ISO weeks 49 and 48 are among them (30, 29), 47
        // and 46 keep their newest (22, 15); November's newest is 30.
        assert_eq!(kept, ["d30", "d29", "d28", "d27", "d26", "d25", "d24", "d22", "d15"]);
        let expired = decisions.iter().find(|d| d.id == "d01").expect("d01");
        assert!(expired.reason.starts_with("expired:"), "{}", expired.reason);
        let monthly = decisions.iter().find(|d| d.id == "d30").expect("d30");
        assert!(monthly.reason.contains("monthly 2026-11"), "{}", monthly.reason);
    }

    fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec((0u64..400 * 86_400, any::<bool>()), 0..60).prop_map(|items| {
            items
                .into_iter()
                .enumerate()
                .map(|(index, (offset, verified))| Candidate {
                    id: format!("b{index:03}"),
                    at: at("2025-01-01T00:00:00Z") + Duration::from_secs(offset),
                    verified,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn retention_holds_its_promises(backups in candidates(), daily in 0u32..10, weekly in 0u32..6, monthly in 0u32..6) {
            let retention = Retention { daily, weekly, monthly };
            let decisions = decide(&backups, &retention);
            prop_assert_eq!(decisions.len(), backups.len());
            let kept: BTreeSet<&str> = decisions.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect();
            // Never more than the periods allow, plus the newest and the newest verified.
            prop_assert!(kept.len() as u32 <= daily + weekly + monthly + 2);
            // The newest backup and the newest verified one are always kept.
            let newest = backups.iter().max_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
            if let Some(newest) = newest {
                prop_assert!(kept.contains(newest.id.as_str()));
            }
            let verified = backups.iter().filter(|b| b.verified).max_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
            if let Some(verified) = verified {
                prop_assert!(kept.contains(verified.id.as_str()));
            }
            // Each of the `daily` most recent days with backups keeps one.
            let mut days: Vec<Date> = backups.iter().map(|b| Date::of(b.at)).collect::<BTreeSet<_>>().into_iter().collect();
            days.reverse();
            for day in days.iter().take(daily as usize) {
                prop_assert!(backups.iter().any(|b| Date::of(b.at) == *day && kept.contains(b.id.as_str())));
            }
            // Applying the rule again to what it kept keeps all of it (a
            // second run of retention deletes nothing more).
            let survivors: Vec<Candidate> = backups.iter().filter(|b| kept.contains(b.id.as_str())).cloned().collect();
            let again = decide(&survivors, &retention);
            prop_assert!(again.iter().all(|d| d.keep), "{:?}", again);
        }
    }
}
