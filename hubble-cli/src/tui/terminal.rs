//! The terminal: raw mode and the alternate screen while the view runs, restored when
//! the guard is dropped and by a panic hook, and a thread reading keys.

use std::io::{self, Stdout};
use std::time::Duration;

use crossterm::event;
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use super::state::State;
use super::view;

/// How long the key reader waits before checking whether the view is gone.
const KEY_POLL: Duration = Duration::from_millis(200);

/// Leaves raw mode and the alternate screen and shows the cursor.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// The terminal in raw mode on the alternate screen; dropping it restores the terminal.
pub struct Guard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Guard {
    /// Switches the terminal over and installs a panic hook that restores it first.
    pub fn enter() -> io::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        enable_raw_mode()?;
        if let Err(e) = execute!(io::stdout(), EnterAlternateScreen) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(mut terminal) => {
                let _ = terminal.hide_cursor();
                Ok(Self { terminal })
            }
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// Draws the state (ratatui writes only the cells that changed).
    pub fn draw(&mut self, state: &State) -> io::Result<()> {
        self.terminal.draw(|frame| view::draw(frame, state))?;
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Reads terminal events on a thread until the receiver is dropped.
pub fn spawn_key_reader(tx: mpsc::Sender<io::Result<event::Event>>) {
    std::thread::spawn(move || loop {
        match event::poll(KEY_POLL) {
            Ok(true) => {
                let ev = event::read();
                let failed = ev.is_err();
                if tx.blocking_send(ev).is_err() || failed {
                    return;
                }
            }
            Ok(false) if tx.is_closed() => return,
            Ok(false) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    });
}
