//! Column alignment with the semantics of Go's `text/tabwriter` as upstream configures
//! it (minimum width 2, padding 3, spaces, left aligned): a cell ends at a tab, the text
//! after a line's last tab is not aligned, and a column block is a run of consecutive
//! lines that have a cell in that column.

/// Minimum width of a column, padding included.
const MIN_WIDTH: usize = 2;
/// Spaces added to the widest cell of a column.
const PADDING: usize = 3;

struct Cell {
    text: String,
    /// Width in Unicode scalar values, as Go counts runes.
    width: usize,
}

/// Buffers tab-separated text and writes it aligned on [`TabWriter::flush`].
#[derive(Default)]
pub struct TabWriter {
    lines: Vec<Vec<Cell>>,
    /// Text of the cell being written.
    cell: String,
}

impl TabWriter {
    /// Appends text; tabs end cells and newlines end lines.
    pub fn write_str(&mut self, text: &str) {
        if self.lines.is_empty() {
            self.lines.push(Vec::new());
        }
        let mut rest = text;
        while let Some(pos) = rest.find(['\t', '\n']) {
            self.cell.push_str(&rest[..pos]);
            self.terminate_cell();
            if rest.as_bytes()[pos] == b'\n' {
                self.lines.push(Vec::new());
            }
            rest = &rest[pos + 1..];
        }
        self.cell.push_str(rest);
    }

    fn terminate_cell(&mut self) {
        let text = std::mem::take(&mut self.cell);
        let width = text.chars().count();
        if let Some(line) = self.lines.last_mut() {
            line.push(Cell { text, width });
        }
    }

    /// Writes everything buffered, aligned, and empties the buffer.
    pub fn flush(&mut self, out: &mut String) {
        if !self.cell.is_empty() {
            self.terminate_cell();
        }
        let mut widths = Vec::new();
        self.format(out, 0, self.lines.len(), &mut widths);
        self.lines.clear();
    }

    fn format(&self, out: &mut String, first: usize, end: usize, widths: &mut Vec<usize>) {
        let column = widths.len();
        let mut line0 = first;
        let mut this = first;
        while this < end {
            if !self.has_column_cell(this, column) {
                this += 1;
                continue;
            }
            self.write_lines(out, line0, this, widths);
            line0 = this;
            let mut width = MIN_WIDTH;
            while this < end && self.has_column_cell(this, column) {
                width = width.max(self.lines[this][column].width + PADDING);
                this += 1;
            }
            widths.push(width);
            self.format(out, line0, this, widths);
            widths.pop();
            line0 = this;
        }
        self.write_lines(out, line0, end, widths);
    }

    /// Whether line `index` has a tab-terminated cell in `column` (its last cell is
    /// never part of a column).
    fn has_column_cell(&self, index: usize, column: usize) -> bool {
        column + 1 < self.lines[index].len()
    }

    fn write_lines(&self, out: &mut String, first: usize, end: usize, widths: &[usize]) {
        for index in first..end {
            for (j, cell) in self.lines[index].iter().enumerate() {
                out.push_str(&cell.text);
                if let Some(width) = widths.get(j) {
                    for _ in cell.width..*width {
                        out.push(' ');
                    }
                }
            }
            if index + 1 < self.lines.len() {
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn align(text: &str) -> String {
        let mut tw = TabWriter::default();
        tw.write_str(text);
        let mut out = String::new();
        tw.flush(&mut out);
        out
    }

    #[test]
    fn aligns_columns_like_go() {
        assert_eq!(
            align("NAME\tSTATUS\tAGE\nnode-one\tConnected\t1m\n"),
            "NAME       STATUS      AGE\nnode-one   Connected   1m\n"
        );
        // A line with fewer cells ends the column block.
        assert_eq!(
            align("a\tb\tc\nlonger\td\ne\tf\tg\n"),
            "a        b   c\nlonger   d\ne        f   g\n"
        );
        // Empty cells are padded too.
        assert_eq!(align("\tx\n"), "   x\n");
        assert_eq!(align("é\tx\n"), "é   x\n");
    }
}
