//! Printing: problems to stderr in rage's shape, tables and documents to stdout.

use std::io::{self, Write};

use meshseal::problem::Problem;

/// `println!` that ignores a closed stdout: `meshseal apply … | head -1`
/// must still apply every document, not panic after the first line.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use say;

/// `error: file:line: message` then `hint: …`.
pub fn problem(p: &Problem) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "error: {p}");
    if let Some(hint) = &p.hint {
        let _ = writeln!(err, "hint: {hint}");
    }
}

/// A problem that does not stop the command: `warning: …` then `hint: …`.
pub fn warning(p: &Problem) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "warning: {p}");
    if let Some(hint) = &p.hint {
        let _ = writeln!(err, "hint: {hint}");
    }
}

/// Prints every problem.
pub fn problems(ps: &[Problem]) {
    for p in ps {
        problem(p);
    }
}

/// Left-aligned columns separated by two spaces, kubectl-style.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Writes to stdout, ignoring a closed pipe (`meshseal get … | head`).
pub fn stdout(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}
