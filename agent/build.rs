//! Builds the guest plugins in ../plugins for wasm32-wasip2 and embeds the
//! built-in ones in the agent. Test plugins are left on disk; their folder
//! is passed to the tests as WEIR_TEST_PLUGINS.
//!
//! The wasm target comes from rustup (`rustup target add wasm32-wasip2`,
//! which ./dev runs). Without it, the build falls back to Debian's Rust and
//! std source (see ../shared/toolchain.md and ./dev), if present.
use std::path::{Path, PathBuf};
use std::process::Command;

/// Built into the agent: (name users write, crate file stem).
const BUILTINS: &[(&str, &str)] = &[
    ("regex-log", "regex_log"),
    ("json-log", "json_log"),
    ("json-stats", "json_stats"),
    ("prometheus-text", "prometheus_text"),
    ("process-groups", "process_groups"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let root = manifest
        .parent()
        .expect("agent/ has a parent")
        .to_path_buf();
    let plugins = root.join("plugins");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets this"));
    // Next to the host's target dir, outside plugins/ so its own output
    // does not trigger a rebuild.
    let target_dir = std::env::var_os("WEIR_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("wasm"));

    watch(&plugins);
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=WEIR_WASM_FALLBACK");

    let wasm_dir = build_plugins(&plugins, &target_dir);

    let mut code = String::from(
        "/// (name, component bytes, compiled code or empty) of each built-in plugin.\n\
         pub static BUILTIN_PLUGINS: &[(&str, &[u8], &[u8])] = &[\n",
    );
    for (name, stem) in BUILTINS {
        let p = wasm_dir.join(format!("{stem}.wasm"));
        if !p.exists() {
            panic!(
                "built-in plugin {name} was not built: {} is missing",
                p.display()
            );
        }
        let compiled = precompile(&p, &out.join(format!("{stem}.cwasm")));
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?}), include_bytes!({:?})),\n",
            p.display().to_string(),
            compiled.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("builtin_plugins.rs"), code).expect("write builtin_plugins.rs");
    embed_scaffold(&root, &out);
    println!("cargo:rustc-env=WEIR_TEST_PLUGINS={}", wasm_dir.display());
}

/// The SDK crate and the WIT, embedded so that `weir plugin new` writes a
/// crate that carries them (no path of this machine in it).
fn embed_scaffold(root: &Path, out: &Path) {
    fn files(base: &Path, dir: &Path, list: &mut Vec<(String, PathBuf)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if name == "target" || name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                files(base, &p, list);
            } else if let Ok(rel) = p.strip_prefix(base) {
                list.push((rel.to_string_lossy().into_owned(), p.clone()));
            }
        }
    }
    let sdk = root.join("plugins/sdk");
    let mut sdk_files = vec![("Cargo.toml".to_string(), sdk.join("Cargo.toml"))];
    files(&sdk, &sdk.join("src"), &mut sdk_files);
    let mut wit_files = Vec::new();
    files(&root.join("wit"), &root.join("wit"), &mut wit_files);
    let mut code = String::new();
    for (name, list) in [("SDK_FILES", &sdk_files), ("WIT_FILES", &wit_files)] {
        code.push_str(&format!(
            "/// (relative path, bytes).\npub static {name}: &[(&str, &[u8])] = &[\n"
        ));
        for (rel, p) in list {
            code.push_str(&format!(
                "    ({rel:?}, include_bytes!({:?})),\n",
                p.display().to_string()
            ));
        }
        code.push_str("];\n");
    }
    for (name, file) in [
        ("PLUGINS_MANIFEST", "plugins/Cargo.toml"),
        ("PLUGINS_LOCK", "plugins/Cargo.lock"),
    ] {
        code.push_str(&format!(
            "/// {file}.\npub static {name}: &str = include_str!({:?});\n",
            root.join(file).display().to_string()
        ));
    }
    std::fs::write(out.join("scaffold_files.rs"), code).expect("write scaffold_files.rs");
}

fn watch(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            watch(&p);
        } else {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}

fn clean_cargo(cmd: &mut Command) {
    // The outer build's settings are for the host; keep them out.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_") && k != "CARGO_HOME"
            || k == "RUSTFLAGS"
            || k == "RUSTC_WORKSPACE_WRAPPER"
            || k == "RUSTC_WRAPPER"
            || k == "RUSTC"
            || k == "RUSTDOC"
        {
            cmd.env_remove(&k);
        }
    }
}

fn rustup_has_target() -> bool {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match sysroot {
        Some(s) => Path::new(&s).join("lib/rustlib/wasm32-wasip2").exists(),
        None => false,
    }
}

fn build_plugins(plugins: &Path, target_dir: &Path) -> PathBuf {
    let manifest = plugins.join("Cargo.toml");
    let fallback = std::env::var_os("WEIR_WASM_FALLBACK").is_some() || !rustup_has_target();
    let mut cmd;
    if !fallback {
        cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        clean_cargo(&mut cmd);
        cmd.args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    } else {
        // Debian's rustc-web with std built from source; wasm-component-ld
        // from the rustup toolchain turns the module into a component.
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let sysroot = Command::new(rustc)
            .args(["--print", "sysroot"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let bin = Path::new(&sysroot).join("lib/rustlib/x86_64-unknown-linux-gnu/bin");
        if !Path::new("/usr/bin/cargo").exists() || !Path::new("/usr/lib/rustlib/src/rust").exists()
        {
            panic!(
                "the wasm32-wasip2 target is not installed. Run `rustup target add wasm32-wasip2` \
                 (./dev does it), or install Debian's fallback: \
                 `apt-get install rustc-web cargo-web rust-web-src wasi-libc`"
            );
        }
        cmd = Command::new("/usr/bin/cargo");
        clean_cargo(&mut cmd);
        let path = format!(
            "{}:/usr/bin:{}",
            bin.join("gcc-ld").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTC", "/usr/bin/rustc")
            .env(
                "CARGO_TARGET_WASM32_WASIP2_LINKER",
                bin.join("wasm-component-ld"),
            )
            .env("RUSTFLAGS", "-L native=/usr/lib/wasm32-wasi")
            .args([
                "build",
                "--release",
                "-Zbuild-std=std,panic_abort",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir.join("fallback"));
    }
    let status = cmd.status().expect("running cargo for the plugins");
    if !status.success() {
        panic!(
            "building the plugins in {} for wasm32-wasip2 failed",
            plugins.display()
        );
    }
    let base = if fallback {
        target_dir.join("fallback")
    } else {
        target_dir.to_path_buf()
    };
    base.join("wasm32-wasip2").join("release")
}

// The engine configuration the agent runs with, the same source file.
#[path = "src/runtime/engine_config.rs"]
mod engine_config;

/// Compile a built-in plugin for the agent's engine now, so that no start
/// of the agent has to (a first start on a fresh machine would otherwise
/// spend seconds and tens of MiB in the compiler). Code compiled here is
/// for this build machine's CPU; where the agent runs on one without the
/// same features, or the configuration differs, wasmtime refuses it at
/// load and the agent compiles the plugin as before. When compiling fails
/// here, an empty file is written and the build goes on, with a warning.
fn precompile(wasm: &Path, out: &Path) -> PathBuf {
    let compiled = std::fs::read(wasm)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            wasmtime::Engine::new(&engine_config::engine_config())
                .and_then(|engine| engine.precompile_component(&bytes))
                .map_err(|e| format!("{e:#}"))
        });
    let bytes = compiled.unwrap_or_else(|e| {
        println!(
            "cargo:warning=cannot precompile {}: {e}; the agent will compile it at start",
            wasm.display()
        );
        Vec::new()
    });
    std::fs::write(out, bytes).expect("write a precompiled plugin");
    out.to_path_buf()
}
