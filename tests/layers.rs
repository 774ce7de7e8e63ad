//! The floors of `src/`: each top-level module may import only the modules below it
//! in [`FLOORS`], so that dependencies run one way and a change to a floor can only
//! touch the floors above it. Read from the source text, so a new upward `crate::`
//! path fails here with its file and line.

use std::path::{Path, PathBuf};

/// Bottom to top. A module may use `crate::X` only for an `X` listed before it.
const FLOORS: [&str; 17] = [
    "core", "config", "metrics", "logging", "store", "tokens", "identity", "signin", "notify",
    "accounts", "exchange", "edge", "api", "ui", "app", "demo", "cli",
];

fn rank(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| *f == module)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/api/tokens.rs` → `api`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file below src/");
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::X` in the code of `text` (comments left out), with its line number.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            // `$crate::` and `patgate_crate::`-like names are not this crate's root.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
        }
    }
    found
}

/// The upward imports in the tree below `src`, as "file:line: a imports b" lines.
fn upward_imports(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in &files {
        let module = module_of(src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = rank(&module) else {
            problems.push(format!(
                "{}: module `{module}` has no floor; add it to FLOORS in tests/layers.rs \
                 and to the map in src/lib.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a source file is readable");
        for (line, target) in crate_paths(&text) {
            if target == module {
                continue;
            }
            match rank(&target) {
                Some(theirs) if theirs < own => {}
                Some(_) => problems.push(format!(
                    "{}:{line}: `{module}` imports `{target}`, which is on a floor above it",
                    file.display()
                )),
                None => problems.push(format!(
                    "{}:{line}: `crate::{target}` is not a known floor",
                    file.display()
                )),
            }
        }
    }
    problems
}

#[test]
fn every_import_points_to_a_lower_floor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = upward_imports(&src);
    assert!(
        problems.is_empty(),
        "imports against the floors of src/ (bottom to top: {}):\n{}",
        FLOORS.join(" < "),
        problems.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_floor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(!declared.is_empty(), "src/lib.rs declares no modules");
    for module in &declared {
        assert!(
            rank(module).is_some(),
            "src/lib.rs declares `{module}`, which has no floor in tests/layers.rs"
        );
    }
    for floor in FLOORS {
        assert!(
            declared.contains(&floor),
            "floor `{floor}` is not a module of src/lib.rs"
        );
    }
}

/// The checker itself: an upward import in a throw-away tree is found and named.
#[test]
fn an_upward_import_is_reported_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path();
    std::fs::create_dir_all(src.join("store")).unwrap();
    std::fs::create_dir_all(src.join("api")).unwrap();
    std::fs::write(
        src.join("store/mod.rs"),
        "//! A store.\n// crate::api in a comment is not an import\nuse crate::core::time::now;\nuse crate::api::ApiRef;\n",
    )
    .unwrap();
    std::fs::write(src.join("api/mod.rs"), "use crate::store::Store;\n").unwrap();
    let problems = upward_imports(src);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("store/mod.rs:4:") && problems[0].contains("`store` imports `api`"),
        "{}",
        problems[0]
    );
}
