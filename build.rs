//! Embeds the default rule pack (`detections/*.yml`) and its placeholder defaults in the binary.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

fn main() {
    // Read when the script runs, not when it is compiled: a script built for another checkout
    // sharing the target directory must still embed this checkout's pack.
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("detections");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = fs::read_dir(&dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut out = String::from("/// The default pack: (file name, contents).\npub static BUILTIN_RULE_FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        if f.extension().and_then(|e| e.to_str()) == Some("yml") {
            println!("cargo:rerun-if-changed={}", f.display());
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            writeln!(
                out,
                "    ({name:?}, include_str!({:?})),",
                f.display().to_string()
            )
            .ok();
        }
    }
    out.push_str("];\n");
    let ph = dir.join("placeholders.yaml");
    println!("cargo:rerun-if-changed={}", ph.display());
    if ph.exists() {
        writeln!(out, "/// Default placeholder values.\npub static BUILTIN_PLACEHOLDERS: &str = include_str!({:?});", ph.display().to_string()).ok();
    } else {
        out.push_str(
            "/// Default placeholder values.\npub static BUILTIN_PLACEHOLDERS: &str = \"{}\";\n",
        );
    }
    let dest =
        Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("builtin_rules.rs");
    fs::write(dest, out).expect("OUT_DIR is writable");
}
