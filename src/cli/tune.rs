//! `ringlog tune --check | --apply [--dry-run] [--profile NAME|FILE]`: host tuning for a
//! broker, from a profile in `tuning/` (see `crate::tune`).
//!
//! Exit codes: 0 the host is as the profile wants (after `--apply`: every change was made);
//! 1 `--check` or `--apply --dry-run` found settings to change; 2 bad arguments or profile;
//! 3 `--apply` could not make some changes (each is listed with the reason).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::tune::{self, Host, Outcome, Profile, Status};

const EXIT_SETTINGS_DIFFER: u8 = 1;
const EXIT_BAD_PROFILE: u8 = 2;
const EXIT_NOT_ALL_APPLIED: u8 = 3;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["check", "apply"])))]
pub struct Args {
    /// Print each setting the profile names: current value, wanted value, status and why.
    #[arg(long)]
    check: bool,
    /// Change what differs from the profile (as root); nothing the profile does not name.
    #[arg(long)]
    apply: bool,
    /// With --apply: list the changes and the files they would write, and change nothing.
    #[arg(long, requires = "apply")]
    dry_run: bool,
    /// A built-in profile (production, vm) or a profile file.
    #[arg(long, default_value = "production")]
    profile: String,
    /// Read and write /proc and /sys under this directory instead of / (tests, chroots).
    #[arg(long, default_value = "/", hide = true)]
    sysroot: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (origin, profile) = match Profile::load(&args.profile) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("ringlog: {error}");
            return Ok(ExitCode::from(EXIT_BAD_PROFILE));
        }
    };
    let host = Host::new(&args.sysroot);
    let items = tune::check(&host, &profile);
    let title = match &profile.description {
        Some(description) => format!("{origin} ({description})"),
        None => origin,
    };
    let mut out = std::io::stdout().lock();
    tune::print_check(&mut out, &title, &items)?;
    let differs = items
        .iter()
        .any(|i| matches!(i.status, Status::Change | Status::Manual));
    if args.check {
        return Ok(exit(differs, EXIT_SETTINGS_DIFFER));
    }
    writeln!(out)?;
    let outcomes = tune::apply(&items, args.dry_run);
    tune::print_apply(&mut out, &outcomes)?;
    if args.dry_run {
        return Ok(exit(differs, EXIT_SETTINGS_DIFFER));
    }
    let incomplete = outcomes
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Failed(_) | Outcome::Manual));
    Ok(exit(incomplete, EXIT_NOT_ALL_APPLIED))
}

fn exit(failed: bool, code: u8) -> ExitCode {
    if failed {
        ExitCode::from(code)
    } else {
        ExitCode::SUCCESS
    }
}
