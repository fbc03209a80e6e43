//! Which groups an alarm maps to, looked up instead of scanned. Built once per policy, on first
//! use (alarm-rollback forces it at cold start): an alarm name is found by one hash lookup, its
//! prefixes by one lookup per distinct prefix length the policy uses, its tags by one lookup per
//! tag, so a policy of thousands of groups decides an alarm in microseconds.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use super::{AlarmMatcher, Deployer, GroupRef, Policy};

/// A guarded group by position in [`Policy::guarded_groups`].
type Slot = u32;

/// The groups one key maps to: nearly always one, so no allocation of its own for it (a policy
/// of 10,000 alarms would otherwise build 10,000 one-element vectors at cold start).
#[derive(Debug, Clone)]
enum Slots {
    One(Slot),
    Many(Vec<Slot>),
}

impl Slots {
    fn push(&mut self, slot: Slot) {
        match self {
            Slots::One(one) if *one == slot => {}
            Slots::One(one) => *self = Slots::Many(vec![*one, slot]),
            Slots::Many(many) => {
                if many.last() != Some(&slot) {
                    many.push(slot);
                }
            }
        }
    }

    fn as_slice(&self) -> &[Slot] {
        match self {
            Slots::One(one) => std::slice::from_ref(one),
            Slots::Many(many) => many,
        }
    }
}

/// Adds `slot` under `key`.
fn file<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Slots>, key: K, slot: Slot) {
    map.entry(key)
        .and_modify(|s| s.push(slot))
        .or_insert(Slots::One(slot));
}

#[derive(Debug, Default)]
pub(crate) struct AlarmIndex {
    /// The guarded groups, in `guarded_groups` order: who deploys, application (or cluster),
    /// group (or service).
    groups: Vec<(Deployer, String, String)>,
    by_name: HashMap<String, Slots>,
    by_prefix: HashMap<String, Slots>,
    /// The distinct lengths (bytes) of the prefixes, shortest first.
    prefix_lengths: Vec<usize>,
    by_tag: HashMap<(String, String), Slots>,
    /// The groups that map some alarm by tag.
    tag_mapping: Vec<Slot>,
}

impl AlarmIndex {
    pub(crate) fn build(policy: &Policy) -> AlarmIndex {
        let mut index = AlarmIndex::default();
        // Sized once: growing a map of thousands of names rehashes it a dozen times.
        let (mut names, mut groups) = (0, 0);
        for group in policy.guarded_groups() {
            groups += 1;
            names += group.policy.rollback.as_ref().map_or(0, |r| r.alarms.len());
        }
        index.groups.reserve_exact(groups);
        index.by_name.reserve(names);
        for (slot, group) in policy.guarded_groups().enumerate() {
            let slot = Slot::try_from(slot).expect("fewer than 4 billion groups");
            index.groups.push((
                group.deployer,
                group.application.to_owned(),
                group.deployment_group.to_owned(),
            ));
            let Some(rollback) = &group.policy.rollback else {
                continue;
            };
            let mut maps_by_tag = false;
            for matcher in &rollback.alarms {
                match matcher {
                    AlarmMatcher::Name(n) => file(&mut index.by_name, n.clone(), slot),
                    AlarmMatcher::Prefix(p) => file(&mut index.by_prefix, p.clone(), slot),
                    AlarmMatcher::Tag { key, value } => {
                        maps_by_tag = true;
                        file(&mut index.by_tag, (key.clone(), value.clone()), slot);
                    }
                }
            }
            if maps_by_tag {
                index.tag_mapping.push(slot);
            }
        }
        let mut lengths: Vec<usize> = index.by_prefix.keys().map(String::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        index.prefix_lengths = lengths;
        index
    }

    /// The slots of the groups mapping an alarm of this name and these tags, in policy order,
    /// each once.
    fn slots(&self, alarm_name: &str, tags: &BTreeMap<String, String>) -> Vec<Slot> {
        let mut found: Vec<Slot> = Vec::new();
        if let Some(s) = self.by_name.get(alarm_name) {
            found.extend(s.as_slice());
        }
        for &len in &self.prefix_lengths {
            if len > alarm_name.len() {
                break;
            }
            if let Some(s) = alarm_name
                .get(..len)
                .and_then(|prefix| self.by_prefix.get(prefix))
            {
                found.extend(s.as_slice());
            }
        }
        if !self.by_tag.is_empty() {
            for (key, value) in tags {
                // The tuple key wants owned strings; tags are few.
                if let Some(s) = self.by_tag.get(&(key.clone(), value.clone())) {
                    found.extend(s.as_slice());
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    fn group<'a>(&self, policy: &'a Policy, slot: Slot) -> Option<GroupRef<'a>> {
        let (deployer, application, group) = self.groups.get(slot as usize)?;
        match deployer {
            Deployer::CodeDeploy => policy.group(application, group),
            Deployer::Ecs => policy
                .ecs_service(application, group)
                .map(super::EcsServiceRef::as_group),
        }
    }

    pub(crate) fn groups_for_alarm<'a>(
        &self,
        policy: &'a Policy,
        alarm_name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Vec<GroupRef<'a>> {
        self.slots(alarm_name, tags)
            .into_iter()
            .filter_map(|slot| self.group(policy, slot))
            .collect()
    }

    /// The groups that map some alarm by tag, in policy order.
    pub(crate) fn tag_mapping_groups<'a>(&self, policy: &'a Policy) -> Vec<GroupRef<'a>> {
        self.tag_mapping
            .iter()
            .filter_map(|&slot| self.group(policy, slot))
            .collect()
    }
}

/// The index a policy carries: built on first use, never part of what the policy is (two policies
/// are equal, cloned or serialised by their document alone).
#[derive(Default)]
pub(crate) struct IndexCell(OnceLock<AlarmIndex>);

impl IndexCell {
    pub(crate) fn get_or_build(&self, policy: &Policy) -> &AlarmIndex {
        self.0.get_or_init(|| AlarmIndex::build(policy))
    }
}

impl Clone for IndexCell {
    fn clone(&self) -> Self {
        IndexCell::default()
    }
}

impl PartialEq for IndexCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for IndexCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "IndexCell(built)"
        } else {
            "IndexCell(not built)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index's answer is the scan's: every group whose matchers match, in policy order.
    fn scanned(
        policy: &Policy,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        policy
            .guarded_groups()
            .filter(|g| {
                g.policy
                    .rollback
                    .as_ref()
                    .is_some_and(|r| r.alarms.iter().any(|m| m.matches(name, tags)))
            })
            .map(|g| (g.application.to_owned(), g.deployment_group.to_owned()))
            .collect()
    }

    #[test]
    fn the_index_finds_what_a_scan_finds_by_name_prefix_and_tag_in_policy_order() {
        let doc = "version: 1
applications:
  shop:
    deployment-groups:
      a: {environment: prod, rollback: {alarms: [{name: shop-5xx}, {prefix: shop-}]}}
      b: {environment: prod, rollback: {alarms: [{prefix: shop-5}, {tag: {key: team, value: shop}}]}}
      c: {environment: prod, rollback: {alarms: [{name: other}]}}
      d: {environment: prod}
ecs-services:
  cl/svc:
    environment: prod
    rollback: {alarms: [{prefix: s}, {name: shop-5xx}]}
";
        let policy = Policy::parse(doc, "inline").unwrap();
        let team: BTreeMap<String, String> = [("team".to_owned(), "shop".to_owned())].into();
        let none = BTreeMap::new();
        for (name, tags) in [
            ("shop-5xx", &none),
            ("shop-5xx", &team),
            ("shop-latency", &none),
            ("other", &team),
            ("s", &none),
            ("", &none),
            ("nothing", &none),
            ("shöp-ü", &none),
        ] {
            let indexed: Vec<(String, String)> = policy
                .groups_for_alarm(name, tags)
                .map(|g| (g.application.to_owned(), g.deployment_group.to_owned()))
                .collect();
            assert_eq!(indexed, scanned(&policy, name, tags), "{name} {tags:?}");
        }
        let all: Vec<String> = policy
            .groups_for_alarm("shop-5xx", &team)
            .map(|g| g.deployment_group.to_owned())
            .collect();
        assert_eq!(all, ["a", "b", "svc"]);
        let tagging: Vec<&str> = policy
            .groups_mapping_by_tag()
            .map(|g| g.deployment_group)
            .collect();
        assert_eq!(tagging, ["b"]);
    }

    #[test]
    fn equal_documents_are_equal_policies_indexed_or_not() {
        let doc = "version: 1\napplications:\n  shop:\n    deployment-groups:\n      a: {environment: prod, rollback: {alarms: [{name: x}]}}\n";
        let indexed = Policy::parse(doc, "inline").unwrap();
        assert_eq!(indexed.groups_for_alarm("x", &BTreeMap::new()).count(), 1);
        let fresh = Policy::parse(doc, "inline").unwrap();
        assert_eq!(indexed, fresh);
        assert_eq!(
            indexed
                .clone()
                .groups_for_alarm("x", &BTreeMap::new())
                .count(),
            1
        );
    }
}
