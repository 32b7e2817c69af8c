//! Plugins built into the agent binary. agent/build.rs compiles the guest
//! crates in `plugins/` to components and embeds them here.
include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component bytes of a built-in plugin.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, b, _)| *b)
}

/// The code compiled when weir was built for the built-in plugin whose
/// component bytes are `bytes` (compared whole, so a plugin file that only
/// shares a name gets nothing), unless compiling it failed then.
pub fn precompiled(bytes: &[u8]) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(_, b, c)| *b == bytes && !c.is_empty())
        .map(|(_, _, c)| *c)
}

/// Give back the memory the embedded plugins' pages take once they were
/// read (hashed, compared, deserialized into code of their own): they are
/// part of the binary's read-only data, so the kernel reads them from the
/// file again if they are touched again (a reload), and until then they
/// need not count in the agent's RSS (about 3 MiB of compiled code and
/// 0.3 MiB of component per built-in plugin used).
pub fn release_resident_pages() {
    #[cfg(target_os = "linux")]
    {
        let page = rustix::param::page_size();
        for (_, wasm, code) in BUILTIN_PLUGINS {
            for bytes in [*wasm, *code] {
                let from = (bytes.as_ptr() as usize).next_multiple_of(page);
                let to = (bytes.as_ptr() as usize + bytes.len()) & !(page - 1);
                if to > from {
                    // SAFETY: whole pages inside a `static` byte array of
                    // this binary (`include_bytes!`, in .rodata, never
                    // written): MADV_DONTNEED drops their resident copies
                    // and later reads fault the same bytes in from the
                    // executable's file (a private file mapping, `man 2
                    // madvise`). No pointer into them is written through.
                    unsafe {
                        libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod reference_pages {
    //! Every built-in plugin has `docs/plugins/<name>.md`, and every key
    //! its settings accept is on that page: named in backquotes and used in
    //! a TOML example. The keys are read from the plugin's source (the
    //! fields of its `Deserialize` structs, `rename`s applied, and the
    //! SDK's shared `metrics` spec where it uses it), so a new option
    //! without documentation fails here.
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("agent/ has a parent")
            .to_path_buf()
    }

    /// Field names (as users write them) of the `Deserialize` structs in
    /// `text`; untagged enums and other enums are values, not keys.
    fn keys(text: &str, out: &mut BTreeSet<String>) {
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let t = lines[i].trim();
            if !(t.starts_with("#[derive(") && t.contains("Deserialize")) {
                i += 1;
                continue;
            }
            // Attributes up to the item.
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim().starts_with("#[") {
                j += 1;
            }
            let item = lines.get(j).map(|l| l.trim()).unwrap_or("");
            let is_struct = item.contains("struct ") && item.ends_with('{');
            i = j + 1;
            if !is_struct {
                continue;
            }
            let mut rename: Option<String> = None;
            let mut skip = false;
            while i < lines.len() && lines[i].trim() != "}" {
                let t = lines[i].trim();
                i += 1;
                if t.starts_with("///") || t.starts_with("//") || t.is_empty() {
                    continue;
                }
                if t.starts_with("#[serde(") {
                    if let Some(r) = t.split("rename = \"").nth(1) {
                        rename = r.split('"').next().map(str::to_string);
                    }
                    skip |= t.contains("skip") || t.contains("flatten");
                    continue;
                }
                if t.starts_with("#[") {
                    continue;
                }
                let field = t.trim_start_matches("pub ");
                if let Some((name, _)) = field.split_once(':') {
                    if !skip {
                        out.insert(rename.take().unwrap_or_else(|| name.trim().to_string()));
                    }
                }
                rename = None;
                skip = false;
            }
        }
    }

    /// TOML code blocks of a Markdown page.
    fn toml_blocks(page: &str) -> String {
        let mut out = String::new();
        let mut inside = false;
        for l in page.lines() {
            if l.trim_start().starts_with("```") {
                inside = !inside && l.trim_start().starts_with("```toml");
                continue;
            }
            if inside {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn every_builtin_option_is_documented_with_an_example() {
        let root = repo();
        let mut problems = Vec::new();
        for (name, _, _) in super::BUILTIN_PLUGINS {
            let src = root.join("plugins").join(name).join("src");
            let mut found = BTreeSet::new();
            let mut uses_spec = false;
            for e in std::fs::read_dir(&src).expect("plugin sources").flatten() {
                let p = e.path();
                if p.file_name().is_some_and(|n| n == "tests.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).expect("read");
                uses_spec |= text.contains("weir_sdk::spec::MetricSpec");
                keys(&text, &mut found);
            }
            if uses_spec {
                let spec =
                    std::fs::read_to_string(root.join("plugins/sdk/src/spec.rs")).expect("spec.rs");
                keys(&spec, &mut found);
            }
            assert!(
                found.len() >= 3,
                "{name}: settings not found in {}",
                src.display()
            );
            let page_path = root.join("docs/plugins").join(format!("{name}.md"));
            let Ok(page) = std::fs::read_to_string(&page_path) else {
                problems.push(format!("{name}: no reference page {}", page_path.display()));
                continue;
            };
            let examples = toml_blocks(&page);
            for k in &found {
                if !page.contains(&format!("`{k}`")) {
                    problems.push(format!("{name}: option `{k}` is not described"));
                }
                let used =
                    examples.contains(&format!("{k} =")) || examples.contains(&format!(".{k}]"));
                if !used {
                    problems.push(format!("{name}: option `{k}` has no TOML example"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_key_reader_sees_renames_and_skips_enums() {
        let mut k = BTreeSet::new();
        keys(
            "#[derive(Deserialize)]\n#[serde(deny_unknown_fields)]\nstruct C {\n    /// doc\n    #[serde(default, rename = \"type\")]\n    kind: String,\n    pub path: String,\n}\n#[derive(Deserialize)]\n#[serde(untagged)]\nenum V {\n    A(f64),\n}\n",
            &mut k,
        );
        assert_eq!(k.into_iter().collect::<Vec<_>>(), ["path", "type"]);
    }
}
