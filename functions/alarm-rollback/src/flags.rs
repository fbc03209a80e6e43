//! Switching feature flags off in an AppConfig feature-flag document
//! (`AWS.AppConfig.FeatureFlags`: `{"version": "1", "flags": {...}, "values": {...}}`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Switch {
    /// The new document, or `None` when every listed flag was already off.
    pub(crate) document: Option<Value>,
    pub(crate) switched_off: Vec<String>,
    pub(crate) already_off: Vec<String>,
}

/// Sets `values.<flag>.enabled = false` for each listed flag, leaving every other flag, value
/// and attribute as it was. A flag the document does not define is an error naming it.
pub(crate) fn switch_off(document: &Value, flags: &[String]) -> Result<Switch, String> {
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
    let mut switched_off = Vec::new();
    let mut already_off = Vec::new();
    for flag in flags {
        // A flag without a value entry is off.
        let enabled = new
            .pointer_mut(&format!("/values/{}/enabled", escape(flag)))
            .filter(|v| **v == Value::Bool(true));
        match enabled {
            Some(v) => {
                *v = Value::Bool(false);
                switched_off.push(flag.clone());
            }
            None => already_off.push(flag.clone()),
        }
    }
    Ok(Switch {
        document: (!switched_off.is_empty()).then_some(new),
        switched_off,
        already_off,
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
        let s = switch_off(
            &document(),
            &["new-checkout-flow".into(), "one-click-pay".into()],
        )
        .unwrap();
        assert_eq!(s.switched_off, ["new-checkout-flow"]);
        assert_eq!(s.already_off, ["one-click-pay"]);
        let mut expected = document();
        expected["values"]["new-checkout-flow"]["enabled"] = json!(false);
        assert_eq!(s.document, Some(expected));
    }

    #[test]
    fn flags_already_off_need_no_new_version() {
        let s = switch_off(&document(), &["one-click-pay".into()]).unwrap();
        assert_eq!(s.document, None);
    }

    #[test]
    fn an_unknown_flag_is_named() {
        let err = switch_off(&document(), &["no-such-flag".into()]).unwrap_err();
        assert!(err.starts_with("flag(s) no-such-flag not defined"), "{err}");
        assert!(switch_off(&json!({"a": 1}), &["x".into()]).is_err());
    }
}
