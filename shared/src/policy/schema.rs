//! The policy's JSON Schema, generated from the Rust types (`schema` feature only: the functions
//! never link schemars). Checked in at `schema/policy.schema.json`; regenerate with
//! `cargo run -p safeship --features schema --bin safeship-policy-schema -- schema/policy.schema.json`.

use super::Policy;

/// Where the checked-in schema lives, relative to the workspace root.
pub const CHECKED_IN_PATH: &str = "schema/policy.schema.json";

/// The command that rewrites the checked-in schema (for messages).
pub const REGENERATE: &str =
    "cargo run -p safeship --features schema --bin safeship-policy-schema -- schema/policy.schema.json";

/// AppConfig refuses a JSON Schema validator's content above this many characters.
pub const APPCONFIG_VALIDATOR_MAX_CHARS: usize = 32_768;

/// The schema of the document `Policy::parse` reads (its deserialization contract: what a
/// policy author writes, defaults optional), as pretty JSON with a trailing newline.
///
/// Draft 7, with `definitions`: editors read it, and it uses nothing a draft-4 validator (the
/// draft AppConfig's own examples declare) does not understand — no `const`, no `$defs`, no
/// numeric `exclusiveMinimum`; the tests validate with both drafts.
#[must_use]
pub fn policy_schema_json() -> String {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with_transform(schemars::transform::RecursiveTransform(const_as_enum))
        .into_generator();
    let schema = generator.into_root_schema_for::<Policy>();
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

/// `const` is draft 6: a draft-4 validator ignores it, and a `oneOf` of documented enum variants
/// would then match every string more than once. A one-value `enum` says the same in every draft.
fn const_as_enum(schema: &mut schemars::Schema) {
    if let Some(value) = schema.remove("const") {
        schema.insert("enum".to_owned(), serde_json::Value::Array(vec![value]));
    }
}
