//! weir: a telemetry agent. Sources on the host read logs, HTTP endpoints
//! and the process table; WebAssembly plugins turn what was read into
//! metric updates; one Prometheus endpoint serves everything.
//!
//! The data path, module by module: [`config`] (parse, validate, diff) →
//! [`sources`] (file tail, ...) → [`runtime`] (engine, instances, limits)
//! → [`store`] (series state) → [`outputs`] (every format, from one walk)
//! → [`server`] (HTTP endpoint), with
//! [`pipeline`] running one source and plugin, and [`agent`] owning the
//! set of pipelines and reloads.
pub mod agent;
pub mod builtin;
pub mod config;
pub mod otlp;
pub mod outputs;
pub mod pipeline;
pub mod push;
pub mod reload;
pub mod remote_write;
pub mod runtime;
pub mod server;
pub mod sources;
pub mod state;
pub mod stats;
pub mod store;
pub mod tools;

#[cfg(test)]
mod architecture {
    //! The module graph of docs/architecture.md, checked: no import cycle
    //! between the top-level modules of this crate.
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Top-level module -> the top-level modules its non-test code names
    /// through `crate::`.
    fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
        let mods: BTreeSet<String> = std::fs::read_dir(src)
            .expect("src")
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| n.strip_suffix(".rs").map(str::to_string))
            .filter(|n| n != "weir" && n != "main")
            .collect();
        let mut g = BTreeMap::new();
        for m in &mods {
            let mut files = vec![src.join(format!("{m}.rs"))];
            let mut dirs = vec![src.join(m)];
            while let Some(d) = dirs.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        dirs.push(p);
                    } else if p.extension().is_some_and(|x| x == "rs") {
                        files.push(p);
                    }
                }
            }
            let mut deps = BTreeSet::new();
            for f in files {
                let text = std::fs::read_to_string(&f).expect("read source");
                // Unit tests may reach anywhere; only the shipped code counts.
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let rest = &code[i + "crate::".len()..];
                    // `crate::a::b` or `crate::{a, b::c}`.
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        Some(group) => group
                            .split('}')
                            .next()
                            .unwrap_or("")
                            .split(',')
                            .map(|s| s.trim().split("::").next().unwrap_or("").trim())
                            .collect(),
                        None => vec![rest
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .next()
                            .unwrap_or("")],
                    };
                    for n in names {
                        if n != m && mods.contains(n) {
                            deps.insert(n.to_string());
                        }
                    }
                }
            }
            g.insert(m.clone(), deps);
        }
        g
    }

    /// A cycle, as the list of modules on it, if there is one.
    fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            n: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == n) {
                let mut c = path[i..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            if done.contains(n) {
                return None;
            }
            path.push(n.to_string());
            for d in g.get(n).into_iter().flatten() {
                if let Some(c) = visit(d, g, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(n.to_string());
            None
        }
        let mut done = BTreeSet::new();
        for n in g.keys() {
            if let Some(c) = visit(n, g, &mut Vec::new(), &mut done) {
                return Some(c);
            }
        }
        None
    }

    #[test]
    fn no_cycle_between_top_level_modules() {
        let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
        assert!(g.len() > 5, "modules not found: {g:?}");
        if let Some(c) = find_cycle(&g) {
            panic!(
                "import cycle between top-level modules: {}\ngraph: {g:#?}",
                c.join(" -> ")
            );
        }
        assert!(
            g["config"].is_empty(),
            "config must be a leaf; it imports {:?}",
            g["config"]
        );
    }

    #[test]
    fn the_check_sees_a_cycle() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.insert("a".into(), ["b".to_string()].into());
        g.insert("b".into(), ["c".to_string()].into());
        g.insert("c".into(), ["a".to_string()].into());
        assert_eq!(
            find_cycle(&g),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        g.insert("c".into(), BTreeSet::new());
        assert_eq!(find_cycle(&g), None);
    }
}
