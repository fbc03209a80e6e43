//! The crate's modules form layers without cycles: each module uses only modules of a layer
//! above its own (see the crate documentation). Read from the sources, so a new `use crate::…`
//! that points down fails here with the file and the module it named.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top layer first; a module may use modules of earlier layers (and its own submodules).
const LAYERS: &[&[&str]] = &[
    &["model", "error"],
    &["env"],
    &["tls", "telemetry", "metrics"],
    &["config", "aws"],
    &["guard"],
    &["event"],
    &["idempotency"],
    &["policy", "revert"],
    &["members"],
    &["runtime"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer of tests/layers.rs"))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`event/sns.rs` → `event`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib").then_some(name)
}

/// The crate modules a file names as `crate::<module>`.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `crate::aws_client!` is a macro exported at the crate's root, not a module.
        let macro_call = rest[name.len()..].starts_with('!');
        if !macro_call && name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
            found.insert(name);
        }
    }
    found
}

#[test]
fn no_module_uses_one_of_a_lower_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        seen.insert(module.clone());
        let text = std::fs::read_to_string(file).expect("reading a source file");
        for used in uses(&text) {
            if used != module && layer_of(&used) >= layer_of(&module) {
                problems.push(format!(
                    "{} ({module}, layer {}) uses crate::{used} (layer {})",
                    file.strip_prefix(&src).unwrap().display(),
                    layer_of(&module),
                    layer_of(&used)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let listed: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|l| l.iter().map(|m| m.to_string()))
        .collect();
    assert_eq!(
        seen, listed,
        "the layers list every module of src/, and only those"
    );
}

#[test]
fn the_reader_finds_what_a_file_uses() {
    let text = "use crate::model::Severity;\nlet e = crate::Error::config(..);\n// crate::env\ncrate::aws_client!(x, y)";
    assert_eq!(
        uses(text),
        ["env", "model"].into_iter().map(String::from).collect()
    );
}
