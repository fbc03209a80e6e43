//! Where a group lives: the member accounts and regions a hub guards (see README, "Guarding an
//! organisation").
//!
//! A policy without `accounts` guards the stack's own account and region, as before. A policy
//! with `accounts` guards those too (the groups that name no account) and, for each group that
//! names accounts, the accounts and regions it names. An event is acted on only where it came
//! from: its account and region must be a group's, and an event from an account the policy does
//! not know is ignored before any AWS call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{GroupRef, Policy};

/// A member account, keyed in `accounts` by its 12-digit id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AccountPolicy {
    /// The name people know the account by: shown in messages, and usable in place of the id
    /// in an application's `accounts`.
    #[serde(default)]
    pub alias: Option<String>,
    /// The regions safeship acts in for this account (at least one).
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub regions: Vec<String>,
    /// The role the hub assumes in the account: a role name there, or the role's ARN. Default:
    /// the member stack's role (`SAFESHIP_MEMBER_ROLE_NAME`, `safeship-member`).
    #[serde(default)]
    pub role: Option<String>,
}

/// Where an event came from: the account and region it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    pub account: String,
    pub region: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "account {} in {}", self.account, self.region)
    }
}

/// The hub: the account and region safeship's own stack runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hub {
    /// `SAFESHIP_HUB_ACCOUNT`; needed only by a policy with `accounts`.
    pub account: Option<String>,
    pub region: Option<String>,
}

/// Where an event is to be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site<'a> {
    /// The hub's own account and region, with the functions' own credentials.
    Hub,
    /// A member account of the policy, through the role assumed there.
    Member {
        place: Place,
        account: &'a AccountPolicy,
    },
}

impl Site<'_> {
    /// `account 111122223333 (payments-prod) in eu-west-1`, or `the hub's account`.
    pub fn describe(&self) -> String {
        match self {
            Site::Hub => "the hub's own account".to_owned(),
            Site::Member { place, account } => match &account.alias {
                Some(alias) => format!("account {} ({alias}) in {}", place.account, place.region),
                None => place.to_string(),
            },
        }
    }
}

impl Policy {
    /// Whether this policy guards member accounts at all.
    #[must_use]
    pub fn guards_members(&self) -> bool {
        !self.accounts.is_empty()
    }

    /// The member account `id_or_alias` names, with its id.
    pub fn member_account(&self, id_or_alias: &str) -> Option<(&str, &AccountPolicy)> {
        if let Some((id, account)) = self.accounts.get_key_value(id_or_alias) {
            return Some((id, account));
        }
        self.accounts
            .iter()
            .find(|(_, a)| a.alias.as_deref() == Some(id_or_alias))
            .map(|(id, a)| (id.as_str(), a))
    }

    /// Where an event from `account` and `region` is acted on, or why it is not: a pure
    /// function of the policy and the event, so an unknown account costs no AWS call.
    ///
    /// Without `accounts` in the policy every event is the hub's (safeship guards its own
    /// account). With them, an event names its account: the hub's, or one of `accounts` in one
    /// of its regions.
    pub fn site_of(
        &self,
        hub: &Hub,
        account: Option<&str>,
        region: Option<&str>,
    ) -> Result<Site<'_>, String> {
        if !self.guards_members() {
            return Ok(Site::Hub);
        }
        let Some(account) = account else {
            return Ok(Site::Hub);
        };
        let region = region.or(hub.region.as_deref());
        if hub.account.as_deref() == Some(account)
            && (region.is_none() || region == hub.region.as_deref())
        {
            return Ok(Site::Hub);
        }
        let Some((id, policy)) = self.accounts.get_key_value(account) else {
            return Err(format!(
                "account {account} is not one the policy guards (accounts: {})",
                self.accounts.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        let Some(region) = region else {
            return Err(format!("the event from account {account} names no region"));
        };
        if !policy.regions.iter().any(|r| r == region) {
            return Err(format!(
                "region {region} is not one the policy guards in account {id} (regions: {})",
                policy.regions.join(", ")
            ));
        }
        Ok(Site::Member {
            place: Place {
                account: id.clone(),
                region: region.to_owned(),
            },
            account: policy,
        })
    }
}

impl GroupRef<'_> {
    /// Whether this group is deployed at `site`: a group that names no account is the hub's;
    /// one that does is at each of its accounts, in its regions (or, naming none, in each
    /// account's).
    pub fn is_at(&self, policy: &Policy, site: &Site<'_>) -> bool {
        match site {
            Site::Hub => self.placement.accounts.is_empty(),
            Site::Member { place, .. } => {
                self.placement.accounts.iter().any(|named| {
                    policy
                        .member_account(named)
                        .is_some_and(|(id, _)| id == place.account)
                }) && (self.placement.regions.is_empty()
                    || self.placement.regions.contains(&place.region))
            }
        }
    }
}

/// The accounts and regions a group names, its own or its application's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement<'a> {
    pub accounts: &'a [String],
    pub regions: &'a [String],
}

impl<'a> Placement<'a> {
    /// The group's own placement where it names accounts, else its application's.
    pub(super) fn of(
        group: (&'a [String], &'a [String]),
        application: (&'a [String], &'a [String]),
    ) -> Placement<'a> {
        let (accounts, regions) = if group.0.is_empty() {
            application
        } else {
            group
        };
        Placement { accounts, regions }
    }
}

/// The problems of `accounts` and of each place that names them.
pub(super) fn problems(policy: &Policy, problems: &mut Vec<String>) {
    let mut aliases: BTreeMap<&str, &str> = BTreeMap::new();
    for (id, account) in &policy.accounts {
        let at = format!("accounts.{id}");
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!("{at}: an account is keyed by its 12-digit id"));
        }
        if account.regions.is_empty() {
            problems.push(format!("{at}.regions: list at least one region"));
        }
        for region in &account.regions {
            if !is_region(region) {
                problems.push(format!(
                    "{at}.regions: {region:?} is not a region name (like eu-west-1)"
                ));
            }
        }
        if let Some(role) = &account.role {
            role_problems(&at, id, role, problems);
        }
        if let Some(alias) = &account.alias {
            if let Some(other) = aliases.insert(alias, id) {
                problems.push(format!(
                    "{at}.alias: {alias:?} is also the alias of account {other}"
                ));
            }
            if policy.accounts.contains_key(alias.as_str()) {
                problems.push(format!("{at}.alias: {alias:?} is another account's id"));
            }
        }
    }
    let mut check = |at: String, accounts: &[String], regions: &[String]| {
        if accounts.is_empty() && !regions.is_empty() {
            problems.push(format!(
                "{at}.regions: regions narrow the accounts named beside them; name the accounts too"
            ));
        }
        for named in accounts {
            match policy.member_account(named) {
                None => problems.push(format!(
                    "{at}.accounts: {named:?} is neither the id nor the alias of an account in accounts"
                )),
                Some((id, account)) => {
                    for region in regions {
                        if !account.regions.contains(region) {
                            problems.push(format!(
                                "{at}.regions: {region} is not among the regions of account {id} ({})",
                                account.regions.join(", ")
                            ));
                        }
                    }
                }
            }
        }
    };
    for (name, app) in &policy.applications {
        check(format!("applications.{name}"), &app.accounts, &app.regions);
        for (group, g) in &app.deployment_groups {
            check(
                format!("applications.{name}.deployment-groups.{group}"),
                &g.accounts,
                &g.regions,
            );
        }
    }
    for (key, service) in &policy.ecs_services {
        check(
            format!("ecs-services.{key}"),
            &service.accounts,
            &service.regions,
        );
    }
}

fn role_problems(at: &str, id: &str, role: &str, problems: &mut Vec<String>) {
    if let Some(rest) = role.strip_prefix("arn:") {
        // arn:<partition>:iam::<account>:role/<path/name>
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let ok = matches!(parts.as_slice(), [_, "iam", "", account, resource]
            if *account == id && resource.starts_with("role/"));
        if !ok {
            problems.push(format!(
                "{at}.role: {role:?} is not the ARN of a role in account {id} (arn:aws:iam::{id}:role/<name>)"
            ));
        }
    } else if role.is_empty()
        || role.len() > 64
        || !role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        problems.push(format!(
            "{at}.role: {role:?} is not a role name (1–64 of letters, digits and +=,.@_-)"
        ));
    }
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-5`: lowercase words and a number.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.last().is_some_and(|n| n.parse::<u8>().is_ok())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

/// The ARN of the role the hub assumes in `account`: the account's own `role` (a name or an
/// ARN), else the member stack's role `default_name`.
#[must_use]
pub fn member_role_arn(
    partition: &str,
    id: &str,
    account: &AccountPolicy,
    default_name: &str,
) -> String {
    match account.role.as_deref() {
        Some(arn) if arn.starts_with("arn:") => arn.to_owned(),
        Some(name) => format!("arn:{partition}:iam::{id}:role/{name}"),
        None => format!("arn:{partition}:iam::{id}:role/{default_name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "version: 1
accounts:
  '111111111111': {alias: payments-prod, regions: [eu-west-1, us-east-1]}
  '222222222222': {regions: [eu-west-1], role: arn:aws:iam::222222222222:role/guard}
applications:
  payments:
    accounts: [payments-prod]
    regions: [eu-west-1]
    deployment-groups:
      prod: {environment: prod}
  ledger:
    accounts: ['111111111111', '222222222222']
    deployment-groups:
      prod: {environment: prod}
      us: {environment: prod, accounts: [payments-prod], regions: [us-east-1]}
  hub-app:
    deployment-groups:
      prod: {environment: prod}
ecs-services:
  arn:aws:ecs:us-east-1:111111111111:service/web/api: {environment: prod}
";

    fn hub() -> Hub {
        Hub {
            account: Some("999999999999".into()),
            region: Some("eu-west-1".into()),
        }
    }

    fn at(p: &Policy, site: &Site<'_>) -> Vec<String> {
        p.guarded_groups()
            .filter(|g| g.is_at(p, site))
            .map(|g| format!("{}/{}", g.application, g.deployment_group))
            .collect()
    }

    #[test]
    fn an_event_is_acted_on_only_where_it_came_from() {
        let p = Policy::parse(DOC, "inline").unwrap();
        let site = p
            .site_of(&hub(), Some("111111111111"), Some("eu-west-1"))
            .unwrap();
        assert_eq!(
            site.describe(),
            "account 111111111111 (payments-prod) in eu-west-1"
        );
        assert_eq!(at(&p, &site), ["ledger/prod", "payments/prod"]);
        let site = p
            .site_of(&hub(), Some("111111111111"), Some("us-east-1"))
            .unwrap();
        assert_eq!(at(&p, &site), ["ledger/prod", "ledger/us", "web/api"]);
        let site = p
            .site_of(&hub(), Some("222222222222"), Some("eu-west-1"))
            .unwrap();
        assert_eq!(at(&p, &site), ["ledger/prod"]);
        let site = p
            .site_of(&hub(), Some("999999999999"), Some("eu-west-1"))
            .unwrap();
        assert_eq!(site, Site::Hub);
        assert_eq!(at(&p, &site), ["hub-app/prod"]);
        // No account named (a person at a terminal): the hub.
        assert_eq!(p.site_of(&hub(), None, None).unwrap(), Site::Hub);
    }

    #[test]
    fn an_unknown_account_or_region_is_refused_with_its_reason() {
        let p = Policy::parse(DOC, "inline").unwrap();
        for (account, region, reason) in [
            (
                "333333333333",
                "eu-west-1",
                "account 333333333333 is not one the policy guards",
            ),
            (
                "222222222222",
                "us-east-1",
                "region us-east-1 is not one the policy guards in account 222222222222",
            ),
            // The hub's account in another region is not the hub.
            (
                "999999999999",
                "us-east-1",
                "account 999999999999 is not one",
            ),
        ] {
            let err = p.site_of(&hub(), Some(account), Some(region)).unwrap_err();
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn a_policy_without_accounts_guards_its_own_account_whatever_the_event_names() {
        let p = Policy::parse(
            "version: 1\napplications:\n  a:\n    deployment-groups:\n      p: {environment: prod}\n",
            "inline",
        )
        .unwrap();
        let site = p
            .site_of(&hub(), Some("123456789012"), Some("us-west-2"))
            .unwrap();
        assert_eq!(site, Site::Hub);
        assert_eq!(at(&p, &site), ["a/p"]);
    }

    #[test]
    fn accounts_and_the_places_naming_them_are_validated() {
        let doc = "version: 1
accounts:
  '1234': {regions: []}
  '111111111111': {alias: x, regions: [eu-west-1, Mars], role: 'arn:aws:iam::222222222222:role/r'}
  '222222222222': {alias: x, regions: [eu-west-1], role: 'bad role'}
applications:
  a:
    accounts: [nobody]
    deployment-groups:
      p: {environment: prod, accounts: [x], regions: [us-east-1]}
  b:
    regions: [eu-west-1]
    deployment-groups: {}
";
        let err = Policy::parse(doc, "inline").unwrap_err().to_string();
        for named in [
            "accounts.1234: an account is keyed by its 12-digit id",
            "accounts.1234.regions: list at least one region",
            "accounts.111111111111.regions: \"Mars\" is not a region name",
            "accounts.111111111111.role: \"arn:aws:iam::222222222222:role/r\" is not the ARN of a role in account 111111111111",
            "accounts.222222222222.role: \"bad role\" is not a role name",
            "accounts.222222222222.alias: \"x\" is also the alias of account 111111111111",
            "applications.a.accounts: \"nobody\" is neither the id nor the alias",
            "applications.a.deployment-groups.p.regions: us-east-1 is not among the regions of account 111111111111",
            "applications.b.regions: regions narrow the accounts named beside them",
        ] {
            assert!(err.contains(named), "{named} not in {err}");
        }
    }

    #[test]
    fn the_role_is_the_accounts_own_or_the_member_stacks() {
        let p = Policy::parse(DOC, "inline").unwrap();
        let (id, a) = p.member_account("payments-prod").unwrap();
        assert_eq!(
            member_role_arn("aws", id, a, "safeship-member"),
            "arn:aws:iam::111111111111:role/safeship-member"
        );
        let (id, a) = p.member_account("222222222222").unwrap();
        assert_eq!(
            member_role_arn("aws", id, a, "safeship-member"),
            "arn:aws:iam::222222222222:role/guard"
        );
    }
}
