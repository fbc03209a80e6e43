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
