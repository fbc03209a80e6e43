//! Switching feature flags off in an AppConfig feature-flag document
//! (`AWS.AppConfig.FeatureFlags`: `{"version": "1", "flags": {...}, "values": {...}}`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Switch {
    /// The new document, or `None` when every listed flag was already off.
    pub(crate) document: Option<Value>,
    pub(crate) switched: Vec<String>,
    pub(crate) already: Vec<String>,
}

/// Sets `values.<flag>.enabled` to `enabled` for each listed flag (switching one on after a
/// fix, or off), leaving everything else as it was. A flag without a value entry is off: on, it
/// gets one. A flag the document does not define is an error naming it.
pub(crate) fn switch_to(
    document: &Value,
    flags: &[String],
    enabled: bool,
) -> Result<Switch, String> {
    let defined = document
        .get("flags")
        .and_then(Value::as_object)
        .ok_or("the document has no \"flags\" object: not an AppConfig feature-flag document")?;
    let unknown: Vec<&str> = flags
        .iter()
        .filter(|f| !defined.contains_key(f.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "flag(s) {} not defined in the document (defined: {})",
            unknown.join(", "),
            defined.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut new = document.clone();
    let mut switched = Vec::new();
    let mut already = Vec::new();
    for flag in flags {
        let pointer = format!("/values/{}/enabled", escape(flag));
        let now = new.pointer(&pointer) == Some(&Value::Bool(true));
        if now == enabled {
            already.push(flag.clone());
            continue;
        }
        switched.push(flag.clone());
        if let Some(v) = new.pointer_mut(&pointer) {
            *v = Value::Bool(enabled);
            continue;
        }
        // No value entry (or no `enabled` in it): only switching on gets here.
        let values = new
            .as_object_mut()
            .expect("a document with flags is an object")
            .entry("values")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        let Some(values) = values.as_object_mut() else {
            return Err("the document's \"values\" is not an object".into());
        };
        let entry = values
            .entry(flag.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        let Some(entry) = entry.as_object_mut() else {
            return Err(format!("the document's values.{flag} is not an object"));
        };
        entry.insert("enabled".into(), Value::Bool(enabled));
    }
    Ok(Switch {
        document: (!switched.is_empty()).then_some(new),
        switched,
        already,
    })
}

/// JSON-pointer escaping of one key (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({
            "version": "1",
            "flags": {
                "new-checkout-flow": {"name": "New checkout flow", "attributes": {"variant": {"constraints": {"type": "string"}}}},
                "one-click-pay": {"name": "One-click pay"},
                "dark-mode": {"name": "Dark mode"}
            },
            "values": {
                "new-checkout-flow": {"enabled": true, "variant": "b"},
                "one-click-pay": {"enabled": false},
                "dark-mode": {"enabled": true}
            }
        })
    }

    #[test]
    fn listed_flags_go_off_and_everything_else_stays() {
        let s = switch_to(
            &document(),
            &["new-checkout-flow".into(), "one-click-pay".into()],
            false,
        )
        .unwrap();
        assert_eq!(s.switched, ["new-checkout-flow"]);
        assert_eq!(s.already, ["one-click-pay"]);
        let mut expected = document();
        expected["values"]["new-checkout-flow"]["enabled"] = json!(false);
        assert_eq!(s.document, Some(expected));
    }

    #[test]
    fn flags_already_off_need_no_new_version() {
        let s = switch_to(&document(), &["one-click-pay".into()], false).unwrap();
        assert_eq!(s.document, None);
    }

    #[test]
    fn an_unknown_flag_is_named() {
        let err = switch_to(&document(), &["no-such-flag".into()], false).unwrap_err();
        assert!(err.starts_with("flag(s) no-such-flag not defined"), "{err}");
        assert!(switch_to(&json!({"a": 1}), &["x".into()], false).is_err());
    }

    #[test]
    fn flags_go_back_on_even_without_a_value_entry() {
        let mut doc = document();
        doc["values"]
            .as_object_mut()
            .unwrap()
            .remove("one-click-pay");
        let s = switch_to(
            &doc,
            &["new-checkout-flow".into(), "one-click-pay".into()],
            true,
        )
        .unwrap();
        assert_eq!(s.switched, ["one-click-pay"]);
        assert_eq!(s.already, ["new-checkout-flow"]);
        let on = s.document.unwrap();
        assert_eq!(on["values"]["one-click-pay"], json!({"enabled": true}));
        assert_eq!(
            on["values"]["new-checkout-flow"],
            doc["values"]["new-checkout-flow"]
        );
        assert_eq!(on["flags"], doc["flags"]);
    }
}
