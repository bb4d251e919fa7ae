//! The `tripline` command line: parses the arguments and dispatches to one module per command
//! (`cli/`). Exit codes: 0 success, 1 failed rule tests or policy findings, 2 usage,
//! configuration or rule-load errors.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::config::ConfigCommand;
use cli::policy::PolicyCommand;
use cli::rules::RulesCommand;
use cli::scan::ScanArgs;

#[derive(Parser)]
#[command(
    name = "tripline",
    version,
    about = "Kubernetes audit-log analyzer: Sigma detections over kube-apiserver audit events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the rules over audit logs (files, directories, .gz, or stdin) and report alerts.
    Scan(ScanArgs),
    /// Work with detection rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Work with the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check an audit policy against the loaded rules.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the daemon: follow the configured sources, detect, deliver to the sinks.
    Run {
        /// The config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// glibc's malloc raises its mmap threshold to the size of each large block freed (up to 32
/// MiB), so after one 14 MB event, buffers of that size come from the threads' heaps and stay
/// resident once freed: a daemon that read one large event kept about 100 MB. A fixed threshold
/// above the default batch size (1 MiB) maps larger buffers on their own and unmaps them when they
/// are freed. musl's allocator already does.
fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; it is called before any thread starts.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

fn main() -> ExitCode {
    tripline::tls::install_crypto_provider();
    let result = match Cli::parse().command {
        Command::Run { config } => {
            return_large_buffers_to_the_os();
            cli::run::run(config)
        }
        Command::Scan(args) => cli::scan::run(args),
        Command::Rules(cmd) => cli::rules::run(cmd),
        Command::Policy(PolicyCommand::Check { policy, source }) => {
            cli::policy::check(&policy, &source)
        }
        Command::Config(ConfigCommand::Check { file }) => cli::config::check(&file),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}
