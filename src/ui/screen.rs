//! Screens of panes, one key each (`1`, `2` ...): which panes a screen holds, in focus order, and
//! where they go on a terminal big enough for all of them. A new pane joins a screen here (or a new
//! screen is one more variant); the panes themselves do not change.

use ratatui::layout::{Constraint, Layout, Rect};

/// The panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaneId {
    Exits,
    Stats,
    Registers,
    Code,
    Console,
    Memory,
    MemMap,
    Virtio,
    DeviceEvents,
    Profile,
}

impl PaneId {
    pub fn title(self) -> &'static str {
        match self {
            PaneId::Exits => "Exits",
            PaneId::Stats => "Stats",
            PaneId::Registers => "Registers",
            PaneId::Code => "Code",
            PaneId::Console => "Console",
            PaneId::Memory => "Memory",
            PaneId::MemMap => "Memory map",
            PaneId::Virtio => "Virtqueues",
            PaneId::DeviceEvents => "Events",
            PaneId::Profile => "Profile",
        }
    }
}

/// A screen of panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Exits, stats, registers, code, console and memory: the default.
    Overview,
    /// The exit stream at full height, with its stats and the code that caused it.
    Exits,
    /// The memory map (slots, devices, layout) beside the memory pane.
    Memory,
    /// The virtio devices: their virtqueues, their event stream, and the memory pane for a buffer.
    Devices,
    /// The exit profile by guest function beside the exit stream.
    Profile,
}

/// The grid needs at least this much room.
pub const WIDE_MIN: (u16, u16) = (130, 32);

impl Screen {
    pub const ALL: [Screen; 5] = [Screen::Overview, Screen::Exits, Screen::Memory, Screen::Devices, Screen::Profile];

    /// The key that shows this screen.
    pub fn key(self) -> char {
        match self {
            Screen::Overview => '1',
            Screen::Exits => '2',
            Screen::Memory => '3',
            Screen::Devices => '4',
            Screen::Profile => '5',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Screen::Overview => "overview",
            Screen::Exits => "exits",
            Screen::Memory => "memory",
            Screen::Devices => "devices",
            Screen::Profile => "profile",
        }
    }

    /// The screen a key shows.
    pub fn of_key(c: char) -> Option<Screen> {
        Screen::ALL.into_iter().find(|s| s.key() == c)
    }

    /// The panes, in focus order.
    pub fn panes(self) -> &'static [PaneId] {
        match self {
            Screen::Overview => {
                &[PaneId::Exits, PaneId::Stats, PaneId::Registers, PaneId::Code, PaneId::Console, PaneId::Memory]
            }
            Screen::Exits => &[PaneId::Exits, PaneId::Stats, PaneId::Code],
            Screen::Memory => &[PaneId::MemMap, PaneId::Memory],
            Screen::Devices => &[PaneId::Virtio, PaneId::DeviceEvents, PaneId::Memory],
            Screen::Profile => &[PaneId::Profile, PaneId::Exits],
        }
    }

    /// Where the panes go in `area` when every pane fits; `focus` picks between panes that share a
    /// slot on a short terminal.
    pub fn grid(self, area: Rect, focus: PaneId) -> Vec<(PaneId, Rect)> {
        match self {
            Screen::Overview => {
                let [top, bottom] =
                    Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
                let [exits, stats] =
                    Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(top);
                let [regs, code, right] =
                    Layout::horizontal([Constraint::Length(50), Constraint::Fill(1), Constraint::Fill(1)])
                        .areas(bottom);
                let mut placed = vec![
                    (PaneId::Exits, exits),
                    (PaneId::Stats, stats),
                    (PaneId::Registers, regs),
                    (PaneId::Code, code),
                ];
                if right.height >= 16 {
                    let [con, mem] =
                        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(right);
                    placed.extend([(PaneId::Console, con), (PaneId::Memory, mem)]);
                } else {
                    let shown = if focus == PaneId::Memory { PaneId::Memory } else { PaneId::Console };
                    placed.push((shown, right));
                }
                placed
            }
            Screen::Exits => {
                let [exits, right] =
                    Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(area);
                let [stats, code] =
                    Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(right);
                vec![(PaneId::Exits, exits), (PaneId::Stats, stats), (PaneId::Code, code)]
            }
            Screen::Memory => {
                let [map, memory] =
                    Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
                vec![(PaneId::MemMap, map), (PaneId::Memory, memory)]
            }
            Screen::Devices => {
                let [queues, right] =
                    Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(area);
                let [events, memory] =
                    Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(right);
                vec![(PaneId::Virtio, queues), (PaneId::DeviceEvents, events), (PaneId::Memory, memory)]
            }
            Screen::Profile => {
                let [profile, exits] =
                    Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
                vec![(PaneId::Profile, profile), (PaneId::Exits, exits)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_screen_places_each_of_its_panes_once() {
        for screen in Screen::ALL {
            assert_eq!(Screen::of_key(screen.key()), Some(screen));
            let placed = screen.grid(Rect::new(0, 0, 160, 45), PaneId::Exits);
            let ids: Vec<PaneId> = placed.iter().map(|(p, _)| *p).collect();
            assert_eq!(ids, screen.panes(), "{screen:?}");
        }
        assert_eq!(Screen::of_key('9'), None);
    }
}
