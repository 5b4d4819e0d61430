//! How a listing is printed: the table and the dates in it.

use super::pass::Node;

/// A human-readable table.
/// With a list of brokers, a last column says which broker each row
/// comes from.
pub fn table(nodes: &[Node]) -> String {
    let brokers = nodes.iter().any(|n| n.broker.is_some());
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let mut row = vec![
                n.node.clone(),
                n.status.clone(),
                n.sessions.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                n.version.clone(),
                utc(n.since),
            ];
            if brokers {
                row.push(n.broker.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    let mut header: Vec<String> = ["NODE", "STATUS", "SESSIONS", "VERSION", "SINCE"]
        .map(String::from)
        .to_vec();
    if brokers {
        header.push("BROKER".to_owned());
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if nodes.is_empty() {
        out.push_str("(no nodes)\n");
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix seconds (civil-from-days, H. Hinnant).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
