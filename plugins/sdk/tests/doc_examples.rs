//! Every public item of the SDK has a documented example, and the
//! examples are doctests (compiled and run by `cargo test`). This test
//! finds public items whose doc comment has no code block, and examples
//! marked `ignore` (never compiled).
use std::path::Path;

const ITEMS: &[&str] = &[
    "pub fn ",
    "pub struct ",
    "pub trait ",
    "pub enum ",
    "pub const ",
    "pub static ",
    "pub type ",
    "pub mod ",
    "macro_rules! ",
    "fn ",
];

fn check_file(path: &Path, problems: &mut Vec<String>) {
    let text = std::fs::read_to_string(path).expect("read source");
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    // A module file's own docs (`//!`) count for `pub mod x;` in lib.rs.
    let mut doc: Vec<&str> = Vec::new();
    let mut hidden = false;
    let mut exported_macro = false;
    let mut skip_until: Option<String> = None;
    let mut in_trait = false;
    let mut in_test = false;
    let mut in_attr = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if let Some(end) = &skip_until {
            if line == end {
                skip_until = None;
            }
            continue;
        }
        if t.starts_with("```ignore") || t.starts_with("```no_run") {
            problems.push(format!("{name}:{}: example is not run ({t})", n + 1));
        }
        if t.starts_with("#[cfg(test)]") {
            in_test = true;
        }
        if t.starts_with("///") {
            doc.push(t);
            continue;
        }
        if t.starts_with("#[doc(hidden)]") {
            hidden = true;
            continue;
        }
        if t.starts_with("#[macro_export]") {
            exported_macro = true;
            continue;
        }
        if t.starts_with("#[") && !t.ends_with(']') {
            in_attr = true;
            continue;
        }
        if in_attr {
            in_attr = !t.ends_with(']');
            continue;
        }
        if t.starts_with("#[") || t.starts_with("//") {
            continue;
        }
        if t.starts_with("pub trait ") {
            in_trait = true;
        } else if in_trait && line == "}" {
            in_trait = false;
        }
        let item = ITEMS.iter().find(|p| t.starts_with(**p));
        let is_public = match item {
            Some(&"macro_rules! ") => exported_macro,
            Some(&"fn ") => in_trait,
            Some(_) => true,
            None => false,
        };
        if is_public && !in_test {
            let header = t.trim_end_matches('{').trim();
            if hidden {
                if t.starts_with("pub mod ") && t.ends_with('{') {
                    skip_until = Some(format!("{indent}}}"));
                }
            } else if t.starts_with("pub mod ") && t.ends_with(';') {
                // Checked in its own file.
            } else if !doc.iter().any(|d| d.contains("```")) {
                problems.push(format!("{name}:{}: no example: {header}", n + 1));
            }
        }
        doc.clear();
        hidden = false;
        exported_macro = false;
    }
}

#[test]
fn every_public_item_has_a_compiled_example() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut files = 0;
    for e in std::fs::read_dir(&src).expect("src") {
        let p = e.expect("entry").path();
        // bindings.rs is generated glue, hidden from the docs.
        if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("bindings.rs") {
            check_file(&p, &mut problems);
            files += 1;
        }
    }
    assert!(files >= 5, "sources not found in {}", src.display());
    assert!(
        problems.is_empty(),
        "public items without a compiled example:\n{}",
        problems.join("\n")
    );
}
