//! CPU lists as Linux writes them (`0-3,8,10-11`).

/// Parses a kernel CPU list; an empty one (an IRQ with no affinity) is an empty list.
pub fn parse(list: &str) -> Option<Vec<usize>> {
    if list.trim().is_empty() {
        return Some(Vec::new());
    }
    crate::config::parse_cpu_list(list).ok()
}

/// Formats CPUs as a kernel CPU list, ranges folded.
pub fn format(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip() {
        assert_eq!(format(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format(&[]), "");
        assert_eq!(parse("0-3,8").unwrap(), vec![0, 1, 2, 3, 8]);
        assert_eq!(parse("\n").unwrap(), Vec::<usize>::new());
        assert!(parse("x").is_none());
    }
}
