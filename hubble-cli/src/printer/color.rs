//! ANSI colours as upstream's printer applies them (one SGR colour code, then a reset),
//! and the terminal escaping that upstream applies to everything it prints as text.

/// SGR foreground colours upstream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Red,
    Green,
    Yellow,
    Blue,
    Magenta,
    Cyan,
}

impl Color {
    fn start(self) -> &'static str {
        match self {
            Color::Red => "\x1b[31m",
            Color::Green => "\x1b[32m",
            Color::Yellow => "\x1b[33m",
            Color::Blue => "\x1b[34m",
            Color::Magenta => "\x1b[35m",
            Color::Cyan => "\x1b[36m",
        }
    }
}

const RESET: &str = "\x1b[0m";

/// The escape sequences that survive terminal escaping when colours are on.
const ALLOWED_SEQUENCES: &[&str] = &[
    "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[35m", "\x1b[36m", RESET,
];

/// When to colour output (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMode {
    /// Colour when standard output is a terminal, `NO_COLOR` is unset and `TERM` is
    /// not `dumb`.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorMode {
    /// Parses `--color`; like upstream, any other value means `auto`.
    pub fn from_flag(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "always" => Self::Always,
            "never" => Self::Never,
            _ => Self::Auto,
        }
    }

    /// Resolves the mode against the environment and standard output.
    pub fn enabled(self) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                let dumb = std::env::var_os("TERM").is_some_and(|v| v == "dumb");
                !no_color && !dumb && stdout_is_terminal()
            }
        }
    }
}

fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

/// Wraps text in colours when enabled.
#[derive(Debug, Clone, Copy)]
pub struct Colorer {
    pub enabled: bool,
}

impl Colorer {
    /// Appends what `body` writes, wrapped in `color` when colours are on.
    pub fn paint(&self, out: &mut String, color: Color, body: impl FnOnce(&mut String)) {
        if self.enabled {
            out.push_str(color.start());
            body(out);
            out.push_str(RESET);
        } else {
            body(out);
        }
    }

    /// Appends `text` wrapped in `color` when colours are on.
    pub fn paint_str(&self, out: &mut String, color: Color, text: &str) {
        self.paint(out, color, |out| out.push_str(text));
    }
}

/// Appends `text` to `out` with terminal control characters neutralised as upstream
/// does: ESC becomes `^[` and CR becomes `\r`, except the colour sequences the printer
/// itself emits when colours are on.
pub fn escape_terminal(out: &mut Vec<u8>, text: &str, colors: bool) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while let Some(found) = memchr::memchr2(0x1b, b'\r', &bytes[i..]) {
        i += found;
        out.extend_from_slice(&bytes[start..i]);
        if bytes[i] == b'\r' {
            out.extend_from_slice(b"\\r");
            i += 1;
        } else {
            // ESC: one of the printer's own colour sequences, or neutralised.
            let rest = &text[i..];
            match ALLOWED_SEQUENCES
                .iter()
                .find(|s| colors && rest.starts_with(**s))
            {
                Some(seq) => {
                    out.extend_from_slice(seq.as_bytes());
                    i += seq.len();
                }
                None => {
                    out.extend_from_slice(b"^[");
                    i += 1;
                }
            }
        }
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters() {
        let mut out = Vec::new();
        escape_terminal(&mut out, "a\x1b[2Jb\rc", false);
        assert_eq!(out, b"a^[[2Jb\\rc");
        out.clear();
        escape_terminal(&mut out, "\x1b[31mred\x1b[0m\x1b[1m", true);
        assert_eq!(out, b"\x1b[31mred\x1b[0m^[[1m");
        out.clear();
        escape_terminal(&mut out, "\x1b[31mred\x1b[0m", false);
        assert_eq!(out, b"^[[31mred^[[0m");
    }
}
