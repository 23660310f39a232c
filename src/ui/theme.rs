//! Colours that read on dark and light terminals (the 8 ANSI hues, never black or white), and
//! nothing but bold/reverse/underline under NO_COLOR.

use ratatui::style::{Color, Modifier, Style};

/// Styles for one run of the UI.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub no_color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.no_color { Style::default() } else { Style::default().fg(c) }
    }

    /// Pane borders: the focused one stands out.
    pub fn border(&self, focused: bool) -> Style {
        if focused { self.fg(Color::Cyan).add_modifier(Modifier::BOLD) } else { Style::default() }
    }
    pub fn header(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }
    /// Something that changed since the last stop.
    pub fn changed(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD | Modifier::REVERSED)
    }
    /// The current instruction, the selected row.
    pub fn current(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    pub fn dim(&self) -> Style {
        Style::default().add_modifier(Modifier::DIM)
    }
    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    pub fn ok(&self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
    /// Exit reasons, by kind.
    pub fn reason(&self, reason: &str) -> Style {
        match reason {
            "io" => self.fg(Color::Cyan),
            "mmio" => self.fg(Color::Magenta),
            "hlt" | "debug" => self.fg(Color::Green),
            "shutdown" | "internal_error" | "fail_entry" => self.error(),
            _ => self.fg(Color::Blue),
        }
    }
    pub fn instruction(&self) -> Style {
        self.fg(Color::Green)
    }
}
