//! Which of safeship's snapshots to prune, whether the account nears its snapshot quota, and
//! whether a fresh one exists: pure functions of what RDS lists and the time.

use chrono::{DateTime, Duration, Utc};

/// A manual snapshot safeship made (it carries the `safeship:deployment-id` tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSnapshot {
    pub id: String,
    /// The `safeship:deployment-id` tag: the deployment, or `none` for a direct request.
    pub deployment: String,
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
    // Checked: a cutoff before the earliest date chrono knows means nothing is old enough.
    let Some(cutoff) = now.checked_sub_days(chrono::Days::new(u64::from(retention_days))) else {
        return Vec::new();
    };
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

/// How far back a direct request that names neither a deployment nor a request id finds the
/// snapshot to keep waiting for: the database's newest direct snapshot started this recently
/// and still being made is that request's snapshot, so "invoke again" waits for the same one.
pub const DIRECT_WINDOW_MINUTES: i64 = 60;

/// The direct snapshot (tagged deployment `none`) a request without ids continues: the newest
/// started within [`DIRECT_WINDOW_MINUTES`] of `now` that is still being made. One already
/// available is never reused: a request asks for a restore point from now, and a snapshot
/// finished half an hour ago would lose half an hour of writes (a caller whose "invoke again"
/// comes after its snapshot finished gets a second one; a `request_id` avoids that).
pub fn direct_to_continue(owned: &[OwnedSnapshot], now: DateTime<Utc>) -> Option<&OwnedSnapshot> {
    let window = Duration::minutes(DIRECT_WINDOW_MINUTES);
    owned
        .iter()
        .filter(|s| s.deployment == "none")
        .filter(|s| matches!(s.status.as_str(), "creating" | "pending"))
        .filter(|s| s.created.is_none_or(|c| now - c <= window))
        .max_by_key(|s| s.created.unwrap_or(DateTime::<Utc>::MAX_UTC))
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
            deployment: format!("d-{id}"),
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
    fn a_retention_beyond_the_calendar_prunes_nothing_and_never_panics() {
        let owned = [snap("a", 40, "available"), snap("b", 35, "available")];
        // About 96 million days overflowed chrono's dates: the hook panicked.
        for days in [96_000_000, u32::MAX] {
            assert!(to_prune(&owned, now(), days, 0).is_empty());
        }
        assert!(to_prune(&owned, DateTime::<Utc>::MIN_UTC, 1, 0).is_empty());
        assert!(fresh(&owned, DateTime::<Utc>::MAX_UTC, Duration::MAX).is_some());
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
    fn a_direct_request_without_ids_continues_only_a_direct_snapshot_still_being_made() {
        let direct = |id: &str, minutes_old: i64, status: &str| OwnedSnapshot {
            id: id.into(),
            deployment: "none".into(),
            created: Some(now() - Duration::minutes(minutes_old)),
            status: status.into(),
        };
        let owned = [
            direct("old", 61, "creating"),
            direct("recent", 40, "available"),
            direct("broken", 5, "failed"),
            snap("of-a-deployment", 0, "creating"),
        ];
        // Finished 40 minutes ago: not a restore point from now, so a new snapshot.
        assert_eq!(direct_to_continue(&owned, now()), None);
        let making = [
            direct("making", 50, "creating"),
            direct("older", 55, "available"),
        ];
        assert_eq!(
            direct_to_continue(&making, now()).map(|s| s.id.as_str()),
            Some("making")
        );
        assert_eq!(direct_to_continue(&making, DateTime::<Utc>::MAX_UTC), None);
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
