//! `tripline policy check`: which rules an audit Policy keeps from ever firing.

use std::path::{Path, PathBuf};

use anyhow::Result;

use tripline::policy::{check_rule, Policy, Verdict};

use super::{RuleSource, EXIT_USAGE};

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Report the rules that can never fire under an audit Policy file (their events are not
    /// recorded, or not with the bodies or stages they read). Exit 1 if there are any.
    Check {
        /// The audit Policy (`audit.k8s.io/v1`), as given to `--audit-policy-file`.
        policy: PathBuf,
        #[command(flatten)]
        source: RuleSource,
    },
}

/// `tripline policy check`.
pub fn check(path: &Path, source: &RuleSource) -> Result<u8> {
    let policy = match Policy::load(path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let (_, set) = match source.load() {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let mut never = 0;
    let mut unknown = Vec::new();
    for r in set.rules() {
        match check_rule(&policy, r) {
            Verdict::CanFire => {}
            Verdict::Never(reasons) => {
                never += 1;
                println!("{} ({}) can never fire:", r.meta.title, r.meta.id);
                for why in reasons {
                    println!("    {why}");
                }
            }
            Verdict::NoExamples => unknown.push(r.meta.title.as_str()),
        }
    }
    if !unknown.is_empty() {
        println!(
            "note: {} rules have no positive tests to check with: {}",
            unknown.len(),
            unknown.join("; ")
        );
    }
    println!(
        "{}: {} of {} rules can fire, {never} cannot{}",
        path.display(),
        set.len() - never - unknown.len(),
        set.len(),
        if unknown.is_empty() {
            String::new()
        } else {
            format!(", {} unchecked", unknown.len())
        }
    );
    Ok(if never > 0 { 1 } else { 0 })
}
