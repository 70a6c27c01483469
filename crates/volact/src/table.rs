//! Text output of listings: aligned tables for people, RFC 4180 CSV for spreadsheets.

/// Each column's width: its widest cell, header included.
pub fn widths(headers: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// One row, each cell padded to its column's width, two spaces apart.
pub fn line(cells: &[String], widths: &[usize]) -> String {
    let last = cells.len().saturating_sub(1);
    let mut out = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i == last {
            out.push_str(cell);
        } else {
            let pad = w.saturating_sub(cell.chars().count());
            out.push_str(cell);
            out.push_str(&" ".repeat(pad + 2));
        }
    }
    out.trim_end().to_string()
}

/// An aligned table: columns as wide as their widest cell, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths = widths(headers, rows);
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header, &widths);
    out.push('\n');
    for row in rows {
        out.push_str(&line(row, &widths));
        out.push('\n');
    }
    out
}

/// RFC 4180 CSV: a header line, then one line per row; fields holding a comma, a quote,
/// a line break or surrounding spaces are quoted, with quotes doubled.
pub fn csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) || s.trim() != s {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = headers
        .iter()
        .map(|h| field(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    for row in rows {
        out.push_str(&row.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let text = csv(
            &["a", "b"],
            &[
                vec!["plain".into(), "x, \"y\"".into()],
                vec![" pad".into(), "line\nbreak".into()],
            ],
        );
        assert_eq!(
            text,
            "a,b\r\nplain,\"x, \"\"y\"\"\"\r\n\" pad\",\"line\nbreak\"\r\n"
        );
    }

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "short".into()],
                vec!["100".into(), "x".into()],
            ],
        );
        assert_eq!(text, "ID   NAME\n1    short\n100  x\n");
    }
}
