//! `safeship lambda rollback`: for a function not deployed through CodeDeploy, point its alias
//! back at the version before (or a named one). The CLI's own Lambda calls.

use clap::Args;
use safeship::env::Env;
use serde_json::json;

use crate::{Error, Exit, Outcome};

#[derive(Debug, Args)]
pub struct LambdaRollbackArgs {
    /// The function (name or ARN).
    #[arg(long)]
    function: String,
    /// The alias traffic goes through.
    #[arg(long)]
    alias: String,
    /// The version to point the alias at (default: the one before the alias's).
    #[arg(long, value_name = "N")]
    to_version: Option<String>,
}

/// Where the alias goes, from what it points at now and the published versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasMove {
    /// Point it at this version, with no weighted routing.
    To(String),
    /// A weighted shift (a canary) is in progress: drop the extra weight and keep the primary.
    DropWeights {
        primary: String,
        weighted: Vec<String>,
    },
}

/// The decision, pure: `versions` as published (numbers and `$LATEST`), `current` the alias's
/// version, `weighted` the versions its routing sends extra traffic to.
pub fn decide(
    versions: &[String],
    current: &str,
    weighted: &[String],
    to: Option<&str>,
) -> Result<AliasMove, String> {
    let number = |v: &str| v.parse::<u64>().ok();
    if let Some(to) = to {
        if number(to).is_none() || !versions.iter().any(|v| v == to) {
            return Err(format!(
                "--to-version {to}: not a published version of the function"
            ));
        }
        if to == current && weighted.is_empty() {
            return Err(format!("the alias already points at version {to}"));
        }
        return Ok(AliasMove::To(to.to_owned()));
    }
    if !weighted.is_empty() {
        return Ok(AliasMove::DropWeights {
            primary: current.to_owned(),
            weighted: weighted.to_vec(),
        });
    }
    let Some(now) = number(current) else {
        return Err(format!(
            "the alias points at {current}, not a published version: name one with --to-version"
        ));
    };
    versions
        .iter()
        .filter_map(|v| number(v))
        .filter(|v| *v < now)
        .max()
        .map(|v| AliasMove::To(v.to_string()))
        .ok_or_else(|| format!("no published version before {current} to go back to"))
}

pub async fn rollback(env: &Env, args: LambdaRollbackArgs) -> Result<Outcome, Error> {
    let sdk = safeship::aws::load_sdk_config(env).await?;
    let lambda = safeship::aws_client!(aws_sdk_lambda, &sdk);
    let resource = format!("alias {} of function {}", args.alias, args.function);
    let not_found = |e: &aws_sdk_lambda::error::SdkError<_, _>| {
        matches!(e, aws_sdk_lambda::error::SdkError::ServiceError(s)
            if aws_sdk_lambda::error::ProvideErrorMetadata::code(s.err()) == Some("ResourceNotFoundException"))
    };
    let alias = match lambda
        .get_alias()
        .function_name(&args.function)
        .name(&args.alias)
        .send()
        .await
    {
        Ok(alias) => alias,
        Err(e) if not_found(&e) => {
            return Err(Error::Usage(format!(
                "{resource}: no such function or alias"
            )))
        }
        Err(e) => return Err(safeship::Error::aws("lambda:GetAlias", resource, e).into()),
    };
    let current = alias.function_version.clone().unwrap_or_default();
    let weighted: Vec<String> = alias
        .routing_config
        .as_ref()
        .and_then(|r| r.additional_version_weights.as_ref())
        .map(|w| w.keys().cloned().collect())
        .unwrap_or_default();
    let mut versions = Vec::new();
    let mut pages = lambda
        .list_versions_by_function()
        .function_name(&args.function)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            safeship::Error::aws("lambda:ListVersionsByFunction", resource.clone(), e)
        })?;
        versions.extend(page.versions().iter().filter_map(|v| v.version.clone()));
    }
    let target = match decide(&versions, &current, &weighted, args.to_version.as_deref()) {
        Ok(target) => target,
        Err(why) => {
            return Ok(Outcome {
                exit: Exit::Refused,
                summary: format!("{resource}: {why}"),
                json: json!({"function": args.function, "alias": args.alias, "from": current, "moved": false, "reason": why}),
            })
        }
    };
    let to = match &target {
        AliasMove::To(v) => v.clone(),
        AliasMove::DropWeights { primary, .. } => primary.clone(),
    };
    // Guarded by the revision read: a change made meanwhile (a deployment) is not overwritten.
    let mut update = lambda
        .update_alias()
        .function_name(&args.function)
        .name(&args.alias)
        .function_version(&to)
        // An empty weight map is what removes a weighted routing (no key would keep it).
        .routing_config(
            aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                .set_additional_version_weights(Some(std::collections::HashMap::new()))
                .build(),
        );
    if let Some(revision) = &alias.revision_id {
        update = update.revision_id(revision);
    }
    update
        .send()
        .await
        .map_err(|e| safeship::Error::aws("lambda:UpdateAlias", resource.clone(), e))?;
    let summary = match &target {
        AliasMove::To(v) => format!("{resource}: moved from version {current} to {v}"),
        AliasMove::DropWeights { primary, weighted } => format!(
            "{resource}: the shift to version {} stopped; all traffic on version {primary}",
            weighted.join(", ")
        ),
    };
    Ok(Outcome {
        exit: Exit::Ok,
        summary,
        json: json!({"function": args.function, "alias": args.alias, "from": current, "to": to, "moved": true}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_alias_goes_back_to_the_version_before_or_the_one_named() {
        let versions = v(&["$LATEST", "1", "2", "3", "10"]);
        assert_eq!(
            decide(&versions, "10", &[], None),
            Ok(AliasMove::To("3".into()))
        );
        assert_eq!(
            decide(&versions, "2", &[], Some("10")),
            Ok(AliasMove::To("10".into()))
        );
        assert!(decide(&versions, "1", &[], None)
            .unwrap_err()
            .contains("no published version before 1"));
        assert!(decide(&versions, "$LATEST", &[], None)
            .unwrap_err()
            .contains("--to-version"));
        assert!(decide(&versions, "3", &[], Some("7"))
            .unwrap_err()
            .contains("--to-version 7"));
        assert!(decide(&versions, "3", &[], Some("3"))
            .unwrap_err()
            .contains("already"));
    }

    #[test]
    fn a_canary_in_progress_is_stopped_by_dropping_its_extra_weight() {
        let versions = v(&["1", "2"]);
        assert_eq!(
            decide(&versions, "1", &v(&["2"]), None),
            Ok(AliasMove::DropWeights {
                primary: "1".into(),
                weighted: v(&["2"])
            })
        );
    }
}
