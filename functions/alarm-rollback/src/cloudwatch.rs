//! The CloudWatch side: the tags of the alarm that fired, for policies that map alarms by tag.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::Client;
use safeship::event::AlarmStateChange;
use safeship::policy::{Policy, Site};

use crate::decide::needs_tags;
use crate::Error;

/// The alarm's tags, looked up only when they could change the decision (see [`needs_tags`]):
/// an `OK` transition, or an alarm already mapped by name, makes no AWS call.
pub(crate) async fn alarm_tags(
    client: &Client,
    policy: &Policy,
    site: &Site<'_>,
    alarm: &AlarmStateChange,
) -> Result<BTreeMap<String, String>, Error> {
    let (true, Some(arn)) = (needs_tags(policy, site, alarm), alarm.alarm_arn.as_deref()) else {
        return Ok(BTreeMap::new());
    };
    let out = match client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
    {
        // Deleted since it fired: it still counts by name and prefix.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            tracing::warn!(alarm = %arn, "the alarm no longer exists: matching it without tags");
            return Ok(BTreeMap::new());
        }
        other => other,
    }
    .map_err(|e| {
        safeship::Error::aws("cloudwatch:ListTagsForResource", format!("alarm {arn}"), e)
    })?;
    Ok(out
        .tags
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| Some((t.key?, t.value?)))
        .collect())
}
