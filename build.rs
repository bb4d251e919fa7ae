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
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let untested = Path::new(&out_dir).join("detections-without-tests");
    fs::create_dir_all(&untested).expect("OUT_DIR is writable");
    let mut out = String::from("/// The default pack: (file name, contents).\npub static BUILTIN_RULE_FILES: &[(&str, &str)] = &[\n");
    let mut without = String::from("/// The default pack with each document's `tests:` blanked out (the same lines, so the\n/// same line numbers): what detection loads.\npub static BUILTIN_RULE_FILES_WITHOUT_TESTS: &[(&str, &str)] = &[\n");
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
            let text = fs::read_to_string(f).expect("a rule file of the pack is readable");
            let blanked = untested.join(name);
            fs::write(&blanked, without_tests(&text)).expect("OUT_DIR is writable");
            writeln!(
                without,
                "    ({name:?}, include_str!({:?})),",
                blanked.display().to_string()
            )
            .ok();
        }
    }
    out.push_str("];\n");
    out.push_str(&without);
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

/// `text` (YAML documents of block mappings, as the pack writes them) with every top-level
/// `tests:` member replaced by empty lines: its key line and every line after it up to the next
/// top-level key or document marker (lines indented, empty, comments, or items of the list at
/// the key's own column). Line numbers stay the same.
fn without_tests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tests = false;
    for line in text.split_inclusive('\n') {
        let starts_member = !line.starts_with([' ', '\t', '-', '#', '\n', '\r']);
        let marker = line.starts_with("---") || line.starts_with("...");
        if line.starts_with("tests:") {
            in_tests = true;
        } else if in_tests && (marker || (starts_member && !line.trim().is_empty())) {
            in_tests = false;
        }
        if in_tests {
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    out
}
