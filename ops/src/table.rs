//! Aligned text tables for the human output of lists (`archive list`, `backup list`, ...): a
//! header row, columns as wide as their widest cell, numbers right-aligned, no trailing spaces.
//! Machine output is `--json`; this is for people and for `grep`/`awk` (one row per line, columns
//! separated by at least two spaces).

use std::fmt::Write as _;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table being built: the columns, then rows of cells.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers and alignments.
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row after the header, each ending in a newline.
    pub fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([self.columns[i].0.chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let header: Vec<String> = self.columns.iter().map(|c| c.0.to_string()).collect();
        let mut out = String::new();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - cell.chars().count();
                match self.columns[i].1 {
                    Align::Left => {
                        let _ = write!(line, "{cell}{}", " ".repeat(pad));
                    }
                    Align::Right => {
                        let _ = write!(line, "{}{cell}", " ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_numbers_align_right() {
        let mut t = Table::new(&[
            ("FILE", Align::Left),
            ("ROWS", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(vec!["a".into(), "5".into(), String::new()]);
        t.row(vec![
            "logs_2026-11-23.2.zst.enc".into(),
            "12345".into(),
            "ORPHAN: ü".into(),
        ]);
        assert_eq!(
            t.render(),
            "FILE                        ROWS  NOTE\n\
             a                              5\n\
             logs_2026-11-23.2.zst.enc  12345  ORPHAN: ü\n"
        );
    }

    #[test]
    fn short_rows_are_padded_and_an_empty_table_is_its_header() {
        let mut t = Table::new(&[("A", Align::Left), ("B", Align::Left)]);
        assert!(t.is_empty());
        assert_eq!(t.render(), "A  B\n");
        t.row(vec!["x".into()]);
        assert_eq!(t.render(), "A  B\nx\n");
    }
}
