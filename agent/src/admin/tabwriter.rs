//! Column alignment compatible with Go's `text/tabwriter`, so tables print
//! exactly as the `cilium` command prints them.
//!
//! Input is text whose cells end with `\t`. A column's width is computed
//! over each run of consecutive lines that have a cell in that column (a
//! "column block"); a cell is padded with spaces to the block's width, which
//! is the widest cell plus `padding`, at least `min_width`. The text after
//! the last tab of a line is not part of any column and is not padded.

/// Aligns `text` as Go's `tabwriter.NewWriter(w, min_width, 0, padding, ' ', 0)` would.
pub fn align(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split('\n')
        .map(|line| line.split('\t').collect())
        .collect();
    let mut aligner = Aligner {
        lines: &lines,
        min_width,
        padding,
        widths: Vec::new(),
        out: String::with_capacity(text.len() * 2),
    };
    aligner.format(0, lines.len());
    aligner.out
}

struct Aligner<'a> {
    /// Lines, each split into cells; all but the last cell of a line end with a tab.
    lines: &'a [Vec<&'a str>],
    min_width: usize,
    padding: usize,
    /// Widths of the columns of the blocks being formatted.
    widths: Vec<usize>,
    out: String,
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

impl Aligner<'_> {
    /// Formats lines `first..end`, whose columns left of `widths.len()` are sized.
    fn format(&mut self, first: usize, end: usize) {
        let column = self.widths.len();
        let mut printed = first;
        let mut this = first;
        while this < end {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            // A block of lines with a cell in this column starts here.
            self.write_lines(printed, this);
            let block_start = this;
            let mut column_width = self.min_width;
            while this < end && column + 1 < self.lines[this].len() {
                column_width = column_width.max(width(self.lines[this][column]) + self.padding);
                this += 1;
            }
            self.widths.push(column_width);
            self.format(block_start, this);
            self.widths.pop();
            printed = this;
        }
        self.write_lines(printed, end);
    }

    fn write_lines(&mut self, first: usize, end: usize) {
        for index in first..end {
            let line = &self.lines[index];
            for (j, cell) in line.iter().enumerate() {
                self.out.push_str(cell);
                if let Some(&column_width) = self.widths.get(j) {
                    let pad = column_width.saturating_sub(width(cell));
                    self.out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            if index + 1 < self.lines.len() {
                self.out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::align;

    #[test]
    fn pads_columns_per_block() {
        let text = "a\tbb\tc\n\tx\t\nlonger\ty\t\nno tabs here\nz\t\n";
        assert_eq!(
            align(text, 2, 1),
            "a      bb c\n       x  \nlonger y  \nno tabs here\nz \n"
        );
    }

    #[test]
    fn min_width_and_trailing_text() {
        assert_eq!(
            align("ID\tLABELS\n1\treserved:host\n", 2, 3),
            "ID   LABELS\n1    reserved:host\n"
        );
        assert_eq!(align("x\n", 5, 3), "x\n");
    }
}
