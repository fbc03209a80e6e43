//! Hostile input for the two parsers every function runs first: the event model (`normalise`,
//! every payload a function gets) and the policy (`Policy::parse`). Neither may panic, hang or
//! take memory without bound on any input; a rejection is an error that names the problem. Both
//! are pure functions of their input (no client, no I/O), so no input can cause an AWS call.
//!
//! Two kinds of cases:
//! - systematic, over every sample in `events/` and the example policy: each field removed, and
//!   set to each wrong type (null, a number, a bool, "", an empty array and object, a 1 MiB
//!   string, nesting as deep as Lambda's JSON parser lets through), inside SNS messages too; every
//!   truncation of the policy; YAML alias bombs and duplicate keys;
//! - generated (proptest): arbitrary JSON, samples with a random field replaced by arbitrary
//!   JSON, and arbitrary YAML-ish text. `PROPTEST_CASES` sets how many per property (256 by
//!   default); `scripts/hostile` runs 100,000 each.

use std::path::PathBuf;

use proptest::prelude::*;
use safeship::event::normalise;
use safeship::policy::Policy;
use serde_json::{json, Value};

fn samples() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("events/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 15, "the samples are there: {}", out.len());
    out
}

fn example_policy() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/policy.yaml"),
    )
    .unwrap()
}

/// Every path to a value in `v`, as JSON pointer segments.
fn paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                at.push(k.clone());
                out.push(at.clone());
                paths(child, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(i.to_string());
                out.push(at.clone());
                paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn pointer(path: &[String]) -> String {
    path.iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// `v` with the value at `path` replaced by `with` (or removed when `None`).
fn mutated(v: &Value, path: &[String], with: Option<&Value>) -> Value {
    let mut out = v.clone();
    let (last, parent) = path.split_last().expect("a path");
    let Some(parent) = out.pointer_mut(&pointer(parent)) else {
        return out;
    };
    match (parent, with) {
        (Value::Object(m), Some(w)) => {
            m.insert(last.clone(), w.clone());
        }
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Array(a), Some(w)) => {
            if let Ok(i) = last.parse::<usize>() {
                a[i] = w.clone();
            }
        }
        (Value::Array(a), None) => {
            if let Ok(i) = last.parse::<usize>() {
                a.remove(i);
            }
        }
        _ => {}
    }
    out
}

/// As deep as a payload can be: Lambda's runtime parses with serde_json, whose recursion limit
/// (128) refuses anything deeper before a handler sees it.
fn deep() -> Value {
    let depth = 120;
    serde_json::from_str(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)))
        .expect("within serde_json's limit")
}

fn wrong_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(0),
        json!(-1.5e300),
        json!(true),
        json!(""),
        json!([]),
        json!({}),
        json!("x".repeat(1 << 20)),
        json!("\u{0}\u{202e}\u{fffd}🦀"),
        deep(),
    ]
}

/// The check every case makes: no panic (a panic fails the test), and a rejection says what.
fn judge(what: &str, payload: &Value) {
    if let Err(e) = normalise(payload) {
        let text = e.to_string();
        assert!(!text.trim().is_empty(), "{what}: an error without words");
        assert!(
            text.len() < 4096,
            "{what}: an error that repeats the input ({} bytes): {}…",
            text.len(),
            text.chars().take(300).collect::<String>()
        );
    }
}

/// The SNS samples' `Message` is JSON in a string: its fields are mutated too.
fn inner_messages(name: &str, sample: &Value) -> Vec<(String, Value)> {
    let Some(text) = sample
        .pointer("/Records/0/Sns/Message")
        .and_then(Value::as_str)
    else {
        return vec![];
    };
    let Ok(inner) = serde_json::from_str::<Value>(text) else {
        return vec![];
    };
    let mut all = Vec::new();
    paths(&inner, &mut Vec::new(), &mut all);
    let mut out = Vec::new();
    for path in all {
        for with in std::iter::once(None).chain(wrong_values().iter().map(Some).collect::<Vec<_>>())
        {
            let changed = mutated(&inner, &path, with.as_ref().map(|v| *v));
            let mut outer = sample.clone();
            outer["Records"][0]["Sns"]["Message"] = json!(changed.to_string());
            out.push((format!("{name} Message{}", pointer(&path)), outer));
        }
    }
    out
}

#[test]
fn every_field_of_every_sample_removed_or_of_every_wrong_type_is_never_a_panic() {
    let mut cases = 0;
    for (name, sample) in samples() {
        // The sample as AWS sends it is accepted (or, for a kind no function takes, named).
        judge(&name, &sample);
        let mut all = Vec::new();
        paths(&sample, &mut Vec::new(), &mut all);
        for path in &all {
            let what = format!("{name} {}", pointer(path));
            judge(&format!("{what} removed"), &mutated(&sample, path, None));
            cases += 1;
            for with in wrong_values() {
                judge(&what, &mutated(&sample, path, Some(&with)));
                cases += 1;
            }
        }
        for (what, payload) in inner_messages(&name, &sample) {
            judge(&what, &payload);
            cases += 1;
        }
    }
    assert!(cases > 2_000, "{cases} cases");
    eprintln!("hostile input: {cases} mutated samples normalised without a panic");
}

#[test]
fn a_required_id_missing_or_mistyped_is_named_in_the_error() {
    let hook: Value = samples()
        .into_iter()
        .find(|(n, _)| n == "codedeploy-lifecycle-before-allow-traffic.json")
        .unwrap()
        .1;
    for field in ["DeploymentId", "LifecycleEventHookExecutionId"] {
        for with in [None, Some(json!(7)), Some(json!(null)), Some(json!(""))] {
            let payload = mutated(&hook, &[field.to_owned()], with.as_ref());
            let err = normalise(&payload).expect_err(field).to_string();
            assert!(err.contains(field), "{field} {with:?}: {err}");
        }
    }
    let alarm: Value = samples()
        .into_iter()
        .find(|(n, _)| n == "alarm-eventbridge-metric.json")
        .unwrap()
        .1;
    for path in [["detail", "alarmName"], ["detail", "state"]] {
        let path: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        let err = normalise(&mutated(&alarm, &path, Some(&json!(42))))
            .expect_err("a mistyped alarm field")
            .to_string();
        assert!(err.contains(&path[1]), "{path:?}: {err}");
    }
}

#[test]
fn every_truncation_of_the_policy_parses_or_says_where_it_is_wrong() {
    let policy = example_policy();
    let mut cut = 0;
    for (i, _) in policy.char_indices() {
        let prefix = &policy[..i];
        if let Err(e) = Policy::parse(prefix, "policy.yaml") {
            let text = e.to_string();
            assert!(text.contains("policy.yaml"), "cut at {i}: {text}");
            cut += 1;
        }
    }
    assert!(cut > 0);
    assert!(Policy::parse(&policy, "policy.yaml").is_ok());
}

#[test]
fn a_yaml_alias_bomb_is_refused_quickly_and_duplicate_keys_are_named() {
    // "Billion laughs": nine levels of ten aliases each.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let letters = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in letters.windows(2) {
        let (prev, next) = (w[0], w[1]);
        bomb.push_str(&format!(
            "{next}: &{next} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    bomb.push_str("version: 1\n");
    let started = std::time::Instant::now();
    let err = Policy::parse(&bomb, "bomb.yaml").expect_err("a bomb is no policy");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("bomb.yaml"), "{err}");

    let twice = "version: 1\napplications:\n  checkout: {}\n  checkout: {}\n";
    let err = Policy::parse(twice, "twice.yaml")
        .expect_err("a key given twice")
        .to_string();
    assert!(err.contains("checkout"), "{err}");
}

/// Arbitrary JSON, a few levels deep, with the keys the parsers look for among the random ones.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("Records".to_owned()),
        Just("detail-type".to_owned()),
        Just("detail".to_owned()),
        Just("source".to_owned()),
        Just("DeploymentId".to_owned()),
        Just("LifecycleEventHookExecutionId".to_owned()),
        Just("alarmData".to_owned()),
        Just("Sns".to_owned()),
        Just("Message".to_owned()),
        Just("state".to_owned()),
        "[a-zA-Z-]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
        Just(json!("aws.cloudwatch")),
        Just(json!("CloudWatch Alarm State Change")),
        Just(json!("safeship")),
        Just(json!("{\"AlarmName\": 1}")),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_json_is_never_a_panic(payload in any_json()) {
        judge("arbitrary JSON", &payload);
    }

    #[test]
    fn a_sample_with_any_field_replaced_by_arbitrary_json_is_never_a_panic(
        which in any::<prop::sample::Index>(),
        field in any::<prop::sample::Index>(),
        with in any_json(),
    ) {
        let samples = samples();
        let (name, sample) = which.get(&samples);
        let mut all = Vec::new();
        paths(sample, &mut Vec::new(), &mut all);
        let path = field.get(&all);
        judge(&format!("{name} {}", pointer(path)), &mutated(sample, path, Some(&with)));
    }

    #[test]
    fn arbitrary_yaml_like_text_is_never_a_panic(text in "[ a-z0-9:\\-\\[\\]{}&*!|>'\"#\n]{0,400}") {
        if let Err(e) = Policy::parse(&text, "fuzz.yaml") {
            prop_assert!(e.to_string().contains("fuzz.yaml"));
        }
    }

    #[test]
    fn the_policy_with_one_line_damaged_is_never_a_panic(
        line in any::<prop::sample::Index>(),
        junk in "[ a-z0-9:\\-\\[\\]{}&*!|>'\"#]{0,40}",
    ) {
        let policy = example_policy();
        let mut lines: Vec<&str> = policy.lines().collect();
        let i = line.index(lines.len());
        lines[i] = &junk;
        let damaged = lines.join("\n");
        if let Err(e) = Policy::parse(&damaged, "damaged.yaml") {
            prop_assert!(e.to_string().contains("damaged.yaml"));
        }
    }
}
