//! Which of safeship's snapshots to prune, whether the account nears its snapshot quota, and
//! whether a fresh one exists: pure functions of what RDS lists and the time.

use chrono::{DateTime, Duration, Utc};

/// A manual snapshot safeship made (it carries the `safeship:deployment-id` tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSnapshot {
    pub id: String,
    pub created: Option<DateTime<Utc>>,
    pub status: String,
}

impl OwnedSnapshot {
    fn available(&self) -> bool {
        self.status == "available"
    }
}

/// Snapshots older than the retention, except the newest `keep_newest` (whatever their age) and
/// any not `available` (still being made, or already being deleted).
pub fn to_prune(
    owned: &[OwnedSnapshot],
    now: DateTime<Utc>,
    retention_days: u32,
    keep_newest: u32,
) -> Vec<String> {
    let mut by_age: Vec<&OwnedSnapshot> = owned.iter().collect();
    // Newest first; a snapshot without a creation time is still being made: counts as newest.
    by_age.sort_by_key(|s| std::cmp::Reverse(s.created.unwrap_or(DateTime::<Utc>::MAX_UTC)));
    let cutoff = now - Duration::days(i64::from(retention_days));
    by_age
        .into_iter()
        .skip(keep_newest as usize)
        .filter(|s| s.available() && s.created.is_some_and(|c| c < cutoff))
        .map(|s| s.id.clone())
        .collect()
}

/// True when the account's manual snapshots reach `percent` of the quota.
pub fn nears_quota(manual_snapshots: u32, quota: u32, percent: u32) -> bool {
    quota > 0 && u64::from(manual_snapshots) * 100 >= u64::from(quota) * u64::from(percent)
}

/// The newest `available` snapshot taken within `max_age` of `now`, if any.
pub fn fresh(
    snapshots: &[OwnedSnapshot],
    now: DateTime<Utc>,
    max_age: Duration,
) -> Option<&OwnedSnapshot> {
    snapshots
        .iter()
        .filter(|s| s.available() && s.created.is_some_and(|c| now - c <= max_age))
        .max_by_key(|s| s.created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-23T03:00:00Z".parse().unwrap()
    }

    fn snap(id: &str, days_old: i64, status: &str) -> OwnedSnapshot {
        OwnedSnapshot {
            id: id.into(),
            created: Some(now() - Duration::days(days_old)),
            status: status.into(),
        }
    }

    #[test]
    fn old_snapshots_go_but_the_newest_stay() {
        let owned = [
            snap("a", 40, "available"),
            snap("b", 35, "available"),
            snap("c", 31, "available"),
            snap("d", 2, "available"),
            snap("e", 60, "available"),
        ];
        // 30-day retention, keep 3: d, c, b are the newest three; a and e are old and go.
        let mut pruned = to_prune(&owned, now(), 30, 3);
        pruned.sort();
        assert_eq!(pruned, ["a", "e"]);
        // keep 1: c, b, a, e are all older than 30 days.
        assert_eq!(to_prune(&owned, now(), 30, 1).len(), 4);
    }

    #[test]
    fn snapshots_in_progress_are_never_pruned() {
        let owned = [
            snap("old-creating", 90, "creating"),
            snap("old", 90, "available"),
        ];
        assert_eq!(to_prune(&owned, now(), 7, 0), ["old"]);
    }

    #[test]
    fn quota_warning_at_the_percentage() {
        assert!(!nears_quota(89, 100, 90));
        assert!(nears_quota(90, 100, 90));
        assert!(!nears_quota(5, 0, 90));
    }

    #[test]
    fn freshness_wants_an_available_recent_snapshot() {
        let mut recent = snap("recent", 0, "available");
        recent.created = Some(now() - Duration::minutes(10));
        let mut making = snap("making", 0, "creating");
        making.created = Some(now() - Duration::minutes(1));
        let snaps = [recent.clone(), making, snap("old", 3, "available")];
        assert_eq!(fresh(&snaps, now(), Duration::minutes(30)), Some(&recent));
        assert_eq!(fresh(&snaps, now(), Duration::minutes(5)), None);
    }
}
