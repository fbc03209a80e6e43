//! Writes the policy's JSON Schema (generated from the Rust types) to the path given, or to
//! standard output without one. Built only with the `schema` feature.

use std::process::ExitCode;

fn main() -> ExitCode {
    let schema = safeship::policy::schema::policy_schema_json();
    match std::env::args_os().nth(1) {
        None => {
            print!("{schema}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(&path, schema) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "writing the policy schema to {}: {e}",
                    path.to_string_lossy()
                );
                ExitCode::FAILURE
            }
        },
    }
}
