//! Command-line tools. Each subcommand lives in its own module and returns `anyhow` errors,
//! which `main` prints as one line. The networked tools (`topic`, `produce`, `consume`,
//! `group`, `bench`) are Kafka clients built on librdkafka, so they work against any
//! Kafka-compatible broker, and run outside the broker's shards: blocking is fine here.

pub mod admin;
pub mod assignment;
pub mod bench;
pub mod client;
pub mod consume;
pub mod dump_log;
pub mod group;
pub mod produce;
pub mod recover_metadata;
pub mod table;
pub mod topic;
pub mod tune;

use clap::error::ErrorKind;

/// Lets a reader that goes away end the tool as it ends any Unix tool (`ringlog topic list |
/// head -1`): quietly, killed by SIGPIPE at its next write to the closed pipe. Rust starts
/// every program with SIGPIPE ignored, which turns that write into an error that `println!`
/// answers with a panic. Only for the client tools: the broker must go on ignoring SIGPIPE,
/// and `consume` watches for the closed pipe itself so that it can still commit what it
/// printed. librdkafka is unaffected: it writes to its sockets with MSG_NOSIGNAL.
pub fn die_on_closed_stdout() {
    // SAFETY: signal(2) restoring the default disposition installs no handler and touches no
    // memory of this process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Parses the command line; a usage mistake ends the process with one line on stderr (what
/// is wrong, clap's tip if it has one, and which `--help` to read) and clap's exit code.
pub fn parse_or_exit<P: clap::Parser>() -> P {
    P::try_parse().unwrap_or_else(|error| {
        if matches!(
            error.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            error.exit();
        }
        eprintln!("ringlog: {}", one_line(&error.to_string()));
        std::process::exit(error.exit_code());
    })
}

/// Folds clap's rendering of a usage error ("error: ...", indented details, a blank line,
/// "tip: ...", "Usage: ringlog topic create ...") into one line.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let mut message: Vec<&str> = Vec::new();
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            break;
        }
        message.push(line.trim().trim_start_matches("error: "));
    }
    let mut text = message.join(" ");
    let mut command = None;
    for line in lines {
        let line = line.trim();
        if let Some(tip) = line.strip_prefix("tip: ") {
            text.push_str(&format!(" ({tip})"));
        } else if let Some(usage) = line.strip_prefix("Usage: ") {
            let words: Vec<&str> = usage
                .split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect();
            command = Some(words.join(" "));
        }
    }
    if let Some(command) = command.filter(|c| !c.is_empty()) {
        text.push_str(&format!("; see '{command} --help'"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_fold_into_one_line() {
        let rendered = "error: unexpected argument '--partiton' found\n\n  \
            tip: a similar argument exists: '--partitions'\n\n\
            Usage: ringlog topic create --partitions <PARTITIONS> <TOPIC>\n\n\
            For more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "unexpected argument '--partiton' found (a similar argument exists: \
             '--partitions'); see 'ringlog topic create --help'"
        );
        let rendered = "error: the following required arguments were not provided:\n  \
            <TOPIC>\n\nUsage: ringlog topic create <TOPIC>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "the following required arguments were not provided: <TOPIC>; see 'ringlog topic \
             create --help'"
        );
    }
}
