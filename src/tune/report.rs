//! What `tune` prints: the check table, and what `--apply` did to each change.

use std::io::{self, Write};

use super::{Item, Outcome};

const HEADERS: [&str; 5] = ["SETTING", "CURRENT", "WANTED", "STATUS", "WHY"];

/// The table of `items`: setting, current value, wanted value, status and why, one per line.
pub fn print_check(out: &mut impl Write, profile: &str, items: &[Item]) -> io::Result<()> {
    writeln!(out, "ringlog tune: {profile}")?;
    let rows: Vec<[&str; 5]> = items
        .iter()
        .map(|i| {
            [
                i.setting.as_str(),
                i.current.as_str(),
                i.wanted.as_str(),
                i.status.label(),
                i.why.as_str(),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&HEADERS).chain(&rows) {
        // The last column is not padded: nothing follows it.
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// One line per change: applied, would apply (with the writes), manual, or failed and why.
pub fn print_apply(out: &mut impl Write, outcomes: &[(&Item, Outcome)]) -> io::Result<()> {
    if outcomes.is_empty() {
        writeln!(out, "nothing to change")?;
    }
    for (item, outcome) in outcomes {
        // For a bound ("<= 1"), the value it will be set to says more than the bound.
        let target = match item.writes.first() {
            Some(first) if item.writes.iter().all(|w| w.value == first.value) => &first.value,
            _ => &item.wanted,
        };
        match outcome {
            Outcome::Applied => writeln!(
                out,
                "applied      {}: {} -> {}",
                item.setting, item.current, target
            )?,
            Outcome::WouldApply => {
                writeln!(
                    out,
                    "would change {}: {} -> {}",
                    item.setting, item.current, target
                )?;
                for write in &item.writes {
                    writeln!(
                        out,
                        "               write '{}' to {}",
                        write.value,
                        write.path.display()
                    )?;
                }
            }
            Outcome::Manual => writeln!(out, "not changed  {}: {}", item.setting, item.why)?,
            Outcome::Failed(reason) => writeln!(out, "FAILED       {}: {reason}", item.setting)?,
        }
    }
    Ok(())
}
