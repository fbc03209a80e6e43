//! The policy's JSON Schema (`schema/policy.schema.json`, generated from the Rust types) stays in
//! step with the Rust types and their validation: the checked-in file is what the types generate,
//! the example policy validates, and documents the Rust validation refuses are refused by the
//! schema too wherever the schema can say so (types, unknown keys, enums, bounds, patterns).

use std::path::PathBuf;

use safeship::policy::schema::{
    policy_schema_json, APPCONFIG_VALIDATOR_MAX_CHARS, CHECKED_IN_PATH, REGENERATE,
};
use safeship::policy::Policy;
use safeship_testkit::emulators::example_policy;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The generated schema under draft 7 (what it declares) and under draft 4 (what AppConfig's own
/// JSON Schema validator examples declare): every verdict below must hold under both.
fn validators() -> Vec<(&'static str, jsonschema::Validator)> {
    let schema: serde_json::Value = serde_json::from_str(&policy_schema_json()).unwrap();
    vec![
        (
            "draft 7",
            jsonschema::draft7::new(&schema).expect("a valid draft-7 schema"),
        ),
        (
            "draft 4",
            jsonschema::draft4::new(&schema).expect("a valid draft-4 schema"),
        ),
    ]
}

/// A YAML policy as the JSON value a schema validator (editor, AppConfig) sees.
fn as_json(yaml: &str) -> serde_json::Value {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"))
}

#[test]
fn the_checked_in_schema_is_what_the_rust_types_generate() {
    let path = workspace_root().join(CHECKED_IN_PATH);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == policy_schema_json(),
        "{CHECKED_IN_PATH} differs from the schema the policy types generate (or is missing); \
         regenerate it from the workspace root with:\n  {REGENERATE}"
    );
}

#[test]
fn the_schema_fits_an_appconfig_json_schema_validator() {
    let schema = policy_schema_json();
    assert!(
        schema.chars().count() <= APPCONFIG_VALIDATOR_MAX_CHARS,
        "the schema is {} characters; an AppConfig validator holds {APPCONFIG_VALIDATOR_MAX_CHARS}",
        schema.chars().count()
    );
}

#[test]
fn the_example_policy_validates_against_the_schema() {
    let example = as_json(&example_policy());
    for (draft, validator) in validators() {
        let errors: Vec<String> = validator
            .iter_errors(&example)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "examples/policy.yaml under {draft}: {errors:#?}"
        );
    }
    assert!(Policy::parse(&example_policy(), "examples/policy.yaml").is_ok());
}

/// A valid group to break one field of at a time.
fn with_group(group: &str) -> String {
    format!(
        "version: 1\napplications:\n  app:\n    deployment-groups:\n      g:\n        environment: prod\n{}",
        group
            .lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    )
}

#[test]
fn a_minimal_policy_is_valid_for_both() {
    let validators = validators();
    for doc in [
        "version: 1\n".to_owned(),
        with_group("rollback:\n  alarms:\n    - name: a\n"),
    ] {
        assert!(Policy::parse(&doc, "test").is_ok(), "{doc}");
        for (draft, validator) in &validators {
            assert!(validator.is_valid(&as_json(&doc)), "{draft}: {doc}");
        }
    }
}

#[test]
fn documents_the_rust_validation_refuses_are_refused_by_the_schema() {
    let snapshot_db = |retention: &str| {
        format!(
            "version: 1\ndatabases:\n  db:\n    kind: instance\n    identifier: db-1\n    environment: prod\n    snapshot: {{{retention}}}\n"
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("an unknown top-level key", "version: 1\nextra: true\n".into()),
        ("a string where a number goes", "version: one\n".into()),
        ("a version other than 1", "version: 2\n".into()),
        ("no version", "applications: {}\n".into()),
        (
            "an unknown environment",
            "version: 1\napplications:\n  a:\n    deployment-groups:\n      g: {environment: qa}\n"
                .into(),
        ),
        ("an unknown key in a group", with_group("rollbak: {}\n")),
        (
            "a rollback without alarms",
            with_group("rollback:\n  alarms: []\n"),
        ),
        (
            "an alarm matcher with two keys",
            with_group("rollback:\n  alarms:\n    - {name: a, prefix: b}\n"),
        ),
        (
            "an alarm matcher with none",
            with_group("rollback:\n  alarms:\n    - {}\n"),
        ),
        (
            "a bake window of 0 minutes",
            with_group("rollback:\n  alarms: [{name: a}]\n  bake-window-minutes: 0\n"),
        ),
        (
            "a bake window over a day",
            with_group("rollback:\n  alarms: [{name: a}]\n  bake-window-minutes: 1441\n"),
        ),
        (
            "an http check that is not http",
            with_group("traffic-hook:\n  http-checks:\n    - {name: h, url: ftp://h/}\n"),
        ),
        (
            "an http check of 0 requests",
            with_group("traffic-hook:\n  http-checks:\n    - {name: h, url: https://h/, requests: 0}\n"),
        ),
        (
            "an expected status that is no HTTP status",
            with_group(
                "traffic-hook:\n  http-checks:\n    - {name: h, url: https://h/, expect-status: 99}\n",
            ),
        ),
        (
            "a check timeout of 0",
            with_group(
                "traffic-hook:\n  http-checks:\n    - {name: h, url: https://h/, timeout-ms: 0}\n",
            ),
        ),
        (
            "an unknown snapshot failure mode",
            with_group("snapshot: {database: db, on-failure: ignore}\n"),
        ),
        ("a retention of 0 days", snapshot_db("retention-days: 0")),
        ("a retention over ten years", snapshot_db("retention-days: 3651")),
        ("a snapshot prefix with an underscore", snapshot_db("prefix: safe_ship")),
        ("a quota warning over 100 percent", snapshot_db("quota-warning-percent: 101")),
        (
            "an unknown notification channel",
            "version: 1\nnotifications:\n  routes:\n    - {channel: pager}\n".into(),
        ),
    ];
    let validators = validators();
    let mut disagreements = Vec::new();
    for (what, doc) in &cases {
        let rust_ok = Policy::parse(doc, what).is_ok();
        for (draft, validator) in &validators {
            let schema_ok = validator.is_valid(&as_json(doc));
            if rust_ok || schema_ok {
                disagreements.push(format!(
                    "{what}: Rust {}, schema ({draft}) {}\n{doc}",
                    if rust_ok { "accepts" } else { "refuses" },
                    if schema_ok { "accepts" } else { "refuses" }
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "each document must be refused by both:\n{}",
        disagreements.join("\n")
    );
}

/// schemars is for the schema tool and these tests: no function links it (release size).
#[test]
fn no_function_links_the_schema_generator() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for function in [
        "traffic-hook",
        "alarm-rollback",
        "predeploy-snapshot",
        "deploy-notify",
        "integrity-check",
    ] {
        let out = std::process::Command::new(&cargo)
            .current_dir(workspace_root())
            .args(["tree", "--offline", "--locked", "-p", function])
            .args(["-e", "normal,build", "--prefix", "none", "--format", "{p}"])
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {function}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(tree.lines().any(|l| l.starts_with("safeship ")), "{tree}");
        let linked: Vec<&str> = tree
            .lines()
            .filter(|l| l.starts_with("schemars ") || l.starts_with("jsonschema "))
            .collect();
        assert!(
            linked.is_empty(),
            "{function} links {linked:?}: keep schemars behind safeship's `schema` feature"
        );
    }
}
