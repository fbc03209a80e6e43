//! Names the policy gives twice. YAML lets a mapping repeat a key and serde keeps the last one,
//! so a second `checkout-prod:` would silently drop the first group's policy: here it is an error
//! that names the key and the lines it stands on.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// The marker [`keys`] puts in its message, for [`locate`] to find.
const GIVEN_TWICE: &str = " is given twice";

/// Deserialises a mapping whose keys must be distinct.
pub(super) fn keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Distinct<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for Distinct<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping that names each key once")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!("{key:?}{GIVEN_TWICE}")));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(Distinct(PhantomData))
}

/// Adds to a parse error from [`keys`] the lines where the repeated key stands.
pub(super) fn locate(document: &str, message: String) -> String {
    let Some(at) = message.find(GIVEN_TWICE) else {
        return message;
    };
    let Some(key) = message[..at].rfind('"').and_then(|end| {
        message[..end]
            .rfind('"')
            .map(|start| &message[start + 1..end])
    }) else {
        return message;
    };
    let lines: Vec<String> = document
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim_start().trim_start_matches(['{', ',', ' ']);
            [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
                .iter()
                .any(|k| {
                    line.strip_prefix(k.as_str())
                        .is_some_and(|rest| rest.trim_start().starts_with(':'))
                })
        })
        .map(|(n, _)| (n + 1).to_string())
        .collect();
    match lines.as_slice() {
        [] | [_] => message,
        [first, rest @ ..] => format!("{message} (lines {first} and {})", rest.join(" and ")),
    }
}
