//! Environment variables, read once at cold start.
//!
//! Every reader goes through [`Env`], so a missing or malformed variable fails with its name, and
//! tests can build an `Env` from pairs instead of mutating the process environment.

use std::collections::HashMap;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A source of environment variables: the process's, or a fixed set (tests, the CLI).
#[derive(Debug, Clone)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A copy with `name` set to `value` (the CLI's `--dry-run` sets `SAFESHIP_DRY_RUN`).
    #[must_use]
    pub fn with(&self, name: &str, value: &str) -> Env {
        let mut vars = self.vars.clone();
        vars.insert(name.to_owned(), value.to_owned());
        Env { vars }
    }

    /// The variable's value; an empty value counts as unset.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str> {
        self.optional(name)
            .ok_or_else(|| Error::config(name, "is required but not set"))
    }

    /// Parses the variable with `FromStr`, or gives `default` when it is unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| Error::config(name, format!("cannot parse {raw:?}: {e}"))),
        }
    }

    /// A time in milliseconds within `range` (`default_ms` when unset); outside it, an error
    /// naming the variable, the range and the value.
    pub fn millis_in(
        &self,
        name: &str,
        default_ms: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<std::time::Duration> {
        let ms: u64 = self.parse_or(name, default_ms)?;
        if !range.contains(&ms) {
            return Err(Error::config(
                name,
                format!(
                    "must be {}..={} milliseconds, found {ms}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(std::time::Duration::from_millis(ms))
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, any case), or `default` when unset.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool> {
        match self.optional(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(Error::config(
                name,
                format!("expected true or false, got {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_name_their_range() {
        let env = Env::from_pairs([("M", "5")]);
        let err = env
            .millis_in("M", 10, 1_000..=60_000)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("M: must be 1000..=60000 milliseconds, found 5"),
            "{err}"
        );
        assert_eq!(
            env.millis_in("N", 2_000, 1_000..=60_000)
                .unwrap()
                .as_millis(),
            2_000
        );
    }
}
