//! Checkpoints in memory: numbered states to go back to. The newest keeps all of RAM; each older
//! one keeps only the pages where it differs from the one after it (reverse deltas, as a backup
//! tool keeps increments), found by comparing RAM page by page with the newest when a checkpoint
//! is taken. Memory for them is bounded: past the budget the oldest are thinned, every other one
//! merged into its neighbour, so that the timeline keeps points far back, fewer of them.

use std::collections::BTreeMap;

use super::{MachineState, RamImage};
use crate::vmm::timeline::Place;

/// A page of guest RAM.
pub const PAGE: usize = 4096;

/// Exits between the checkpoints kvmscope takes on its own at the user's stops (`--checkpoint-every`).
pub const AUTO_EVERY: u64 = 10_000;

/// Bytes checkpoints may hold, the newest's full RAM included (the budget the oldest are thinned to).
pub const DEFAULT_BUDGET: u64 = 2 << 30;

/// One checkpoint: where on the timeline, and what it holds.
pub struct Checkpoint {
    pub id: u32,
    /// Its place on the timeline.
    pub place: Place,
    /// Time since the VM started.
    pub t_ns: u64,
    /// Whether the user asked for it (kept when thinning) or kvmscope took it on its own.
    pub manual: bool,
    pub machine: MachineState,
    /// Its mark in each writable disk's undo log (the disks go back with it).
    pub disks: Vec<u64>,
    /// The exit breakpoints' matches when it was taken, by number.
    pub exit_hits: Vec<(u32, u64)>,
    /// The pages (by guest-physical address) whose content differs in the next newer checkpoint,
    /// as they were here. Empty for the newest, whose RAM is [`Checkpoints::newest_ram`].
    delta: BTreeMap<u64, Box<[u8]>>,
}

impl Checkpoint {
    /// The guest exits before it.
    pub fn seq(&self) -> u64 {
        self.place.exits
    }

    /// Bytes this checkpoint keeps of its own.
    pub fn size(&self) -> u64 {
        (self.delta.len() * PAGE) as u64
    }
}

/// Every checkpoint of a run, oldest first.
pub struct Checkpoints {
    list: Vec<Checkpoint>,
    /// The newest checkpoint's RAM, whole.
    newest_ram: RamImage,
    next_id: u32,
    pub budget: u64,
    /// Checkpoints merged away to stay in the budget.
    pub thinned: u64,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self { list: Vec::new(), newest_ram: Vec::new(), next_id: 1, budget: DEFAULT_BUDGET, thinned: 0 }
    }
}

/// RAM as the checkpoints read and write it: (guest-physical address, bytes) per range.
pub type RamSlices<'a> = [(u64, &'a [u8])];

/// Brings `newest` up to `now` (same ranges), page by page; the pages that changed, as they
/// were in `newest`. Only those are copied: a checkpoint after few writes costs a read of RAM.
fn advance(newest: &mut RamImage, now: &RamSlices) -> BTreeMap<u64, Box<[u8]>> {
    let mut changed = BTreeMap::new();
    for ((gpa, kept), (_, bytes)) in newest.iter_mut().zip(now) {
        for (i, (old, new)) in kept.chunks_mut(PAGE).zip(bytes.chunks(PAGE)).enumerate() {
            if old != new {
                changed.insert(*gpa + (i * PAGE) as u64, Box::from(&*old));
                old.copy_from_slice(new);
            }
        }
    }
    changed
}

/// Writes `pages` over `ram`.
fn apply(ram: &mut RamImage, pages: &BTreeMap<u64, Box<[u8]>>) {
    for (&at, page) in pages {
        if let Some((gpa, bytes)) = ram.iter_mut().find(|(gpa, b)| at >= *gpa && at - gpa < b.len() as u64) {
            let off = (at - *gpa) as usize;
            let end = (off + page.len()).min(bytes.len());
            bytes[off..end].copy_from_slice(&page[..end - off]);
        }
    }
}

impl Checkpoints {
    /// Adds a checkpoint of `machine` and `ram` taken at `place`; its number.
    pub fn add(
        &mut self,
        place: Place,
        t_ns: u64,
        manual: bool,
        machine: MachineState,
        ram: &RamSlices,
    ) -> u32 {
        let same_ranges = self.newest_ram.len() == ram.len()
            && self.newest_ram.iter().zip(ram).all(|((a, x), (b, y))| a == b && x.len() == y.len());
        match self.list.last_mut() {
            Some(newest) if same_ranges => newest.delta = advance(&mut self.newest_ram, ram),
            _ => self.newest_ram = ram.iter().map(|&(gpa, bytes)| (gpa, bytes.to_vec())).collect(),
        }
        let id = self.next_id;
        self.next_id += 1;
        self.list.push(Checkpoint {
            id,
            place,
            t_ns,
            manual,
            machine,
            disks: Vec::new(),
            exit_hits: Vec::new(),
            delta: BTreeMap::new(),
        });
        self.thin();
        id
    }

    /// Sets checkpoint `id`'s marks in the disks' undo logs.
    pub fn mark_disks(&mut self, id: u32, marks: Vec<u64>) {
        if let Some(c) = self.list.iter_mut().find(|c| c.id == id) {
            c.disks = marks;
        }
    }

    /// Sets checkpoint `id`'s exit breakpoint matches.
    pub fn set_exit_hits(&mut self, id: u32, hits: Vec<(u32, u64)>) {
        if let Some(c) = self.list.iter_mut().find(|c| c.id == id) {
            c.exit_hits = hits;
        }
    }

    /// Every checkpoint, oldest first.
    pub fn list(&self) -> &[Checkpoint] {
        &self.list
    }

    /// Checkpoint `id`, if it is kept.
    pub fn get(&self, id: u32) -> Option<&Checkpoint> {
        self.list.iter().find(|c| c.id == id)
    }

    /// The newest checkpoint known to be no later than `place`: where going to `place` starts.
    pub fn anchor_for(&self, place: &Place) -> Option<&Checkpoint> {
        self.list.iter().rev().find(|c| c.place.known_not_after(place))
    }

    /// Checkpoint `id`'s RAM, whole: the newest's, with the older ones' pages put back down to it
    /// (what [`Checkpoints::restore_into`] writes, for the tests to compare).
    #[cfg(test)]
    pub fn ram_of(&self, id: u32) -> Option<RamImage> {
        let at = self.list.iter().position(|c| c.id == id)?;
        let mut ram = self.newest_ram.clone();
        for c in self.list[at..].iter().rev() {
            apply(&mut ram, &c.delta);
        }
        Some(ram)
    }

    /// Sets one byte of the newest checkpoint's RAM (the guest's own byte under an int3 of
    /// kvmscope's).
    pub fn poke_newest(&mut self, gpa: u64, byte: u8) {
        let range = self.newest_ram.iter_mut().find(|(s, b)| gpa >= *s && gpa - s < b.len() as u64);
        if let Some((start, bytes)) = range {
            bytes[(gpa - *start) as usize] = byte;
        }
    }

    /// Writes checkpoint `id`'s RAM into `ram` (same ranges), only the pages that differ: going
    /// back a short way writes little. The pages written, or `None` for no such checkpoint.
    pub fn restore_into(&self, id: u32, ram: &mut [(u64, &mut [u8])]) -> Option<usize> {
        let at = self.list.iter().position(|c| c.id == id)?;
        // A page's content at `id`: the delta of the oldest checkpoint from `id` on that has it,
        // else the newest's.
        let mut pages: std::collections::HashMap<u64, &[u8]> = std::collections::HashMap::new();
        for c in self.list[at..].iter().rev() {
            pages.extend(c.delta.iter().map(|(&gpa, page)| (gpa, &page[..])));
        }
        let mut written = 0;
        for ((gpa, dst), (_, newest)) in ram.iter_mut().zip(&self.newest_ram) {
            for (i, (page, kept)) in dst.chunks_mut(PAGE).zip(newest.chunks(PAGE)).enumerate() {
                let want = pages.get(&(*gpa + (i * PAGE) as u64)).copied().unwrap_or(kept);
                if *page != *want {
                    page.copy_from_slice(&want[..page.len()]);
                    written += 1;
                }
            }
        }
        Some(written)
    }

    /// Drops the checkpoints after `id` (going back to it makes them another future).
    pub fn truncate_after(&mut self, id: u32) {
        let Some(at) = self.list.iter().position(|c| c.id == id) else { return };
        if at + 1 == self.list.len() {
            return;
        }
        // The newest's RAM becomes `id`'s, in place.
        for c in self.list[at..].iter().rev() {
            apply(&mut self.newest_ram, &c.delta);
        }
        self.list.truncate(at + 1);
        if let Some(c) = self.list.last_mut() {
            c.delta.clear();
        }
    }

    /// Bytes held: the newest's RAM and every delta.
    pub fn size(&self) -> u64 {
        self.newest_ram.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
            + self.list.iter().map(Checkpoint::size).sum::<u64>()
    }

    /// Merges old checkpoints away until the size is within the budget: of the automatic ones,
    /// every other from the oldest (a checkpoint's delta goes into the one before it).
    fn thin(&mut self) {
        while self.size() > self.budget && self.list.len() > 2 {
            // The oldest automatic checkpoint that has an older neighbour to merge into, else the
            // oldest if kvmscope took it.
            let automatic = |i: &usize| !self.list[*i].manual;
            let Some(victim) = (1..self.list.len() - 1).find(automatic).or_else(|| Some(0).filter(automatic)) else {
                // Only checkpoints the user took are left to thin: they stay, over the budget.
                break;
            };
            let removed = self.list.remove(victim);
            if victim > 0 {
                // The older neighbour's delta led to the removed one; now it leads to the next:
                // its pages win, the removed one's fill in the rest.
                let older = &mut self.list[victim - 1].delta;
                for (at, page) in removed.delta {
                    older.entry(at).or_insert(page);
                }
            }
            self.thinned += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> MachineState {
        MachineState { vcpus: Vec::new(), chips: None, devices: Vec::new() }
    }

    fn slices(ram: &RamImage) -> Vec<(u64, &[u8])> {
        ram.iter().map(|(gpa, b)| (*gpa, &b[..])).collect()
    }

    fn ram(fill: &[(usize, u8)]) -> RamImage {
        let mut bytes = vec![0u8; 8 * PAGE];
        for &(page, v) in fill {
            bytes[page * PAGE..(page + 1) * PAGE].fill(v);
        }
        vec![(0x1000, bytes)]
    }

    #[test]
    fn older_checkpoints_keep_only_the_pages_that_changed_and_come_back_whole() {
        let mut c = Checkpoints::default();
        let a = c.add(Place::at_exit(10), 1, true, machine(), &slices(&ram(&[(0, 1)])));
        let b = c.add(Place::at_exit(20), 2, false, machine(), &slices(&ram(&[(0, 2), (3, 7)])));
        let d = c.add(Place::at_exit(30), 3, false, machine(), &slices(&ram(&[(0, 2), (3, 8), (5, 9)])));
        assert_eq!(c.get(a).unwrap().size(), (2 * PAGE) as u64, "pages 0 and 3 differ from b");
        assert_eq!(c.get(b).unwrap().size(), (2 * PAGE) as u64, "pages 3 and 5 differ from d");
        assert_eq!(c.ram_of(a).unwrap(), ram(&[(0, 1)]));
        assert_eq!(c.ram_of(b).unwrap(), ram(&[(0, 2), (3, 7)]));
        assert_eq!(c.ram_of(d).unwrap(), ram(&[(0, 2), (3, 8), (5, 9)]));
        assert_eq!(c.anchor_for(&Place::at_exit(25)).map(|k| k.id), Some(b));
        assert!(c.anchor_for(&Place::at_exit(5)).is_none());
        // Going back to b: d is another future now.
        c.truncate_after(b);
        assert_eq!(c.list().len(), 2);
        assert_eq!(c.ram_of(b).unwrap(), ram(&[(0, 2), (3, 7)]));
        assert_eq!(c.ram_of(a).unwrap(), ram(&[(0, 1)]));
    }

    #[test]
    fn restoring_writes_only_the_pages_that_differ() {
        let mut c = Checkpoints::default();
        let a = c.add(Place::at_exit(10), 1, true, machine(), &slices(&ram(&[(0, 1)])));
        c.add(Place::at_exit(20), 2, false, machine(), &slices(&ram(&[(0, 2), (3, 7)])));
        let mut guest = ram(&[(0, 2), (3, 7), (6, 5)]);
        let mut view: Vec<(u64, &mut [u8])> = guest.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        assert_eq!(c.restore_into(a, &mut view), Some(3), "pages 0, 3 and 6");
        assert_eq!(guest, ram(&[(0, 1)]));
        let mut view: Vec<(u64, &mut [u8])> = guest.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        assert_eq!(c.restore_into(a, &mut view), Some(0), "already there");
        assert_eq!(c.restore_into(99, &mut view), None);
    }

    #[test]
    fn over_the_budget_automatic_checkpoints_merge_and_the_rest_stay_exact() {
        let mut c = Checkpoints { budget: (8 + 3) as u64 * PAGE as u64, ..Default::default() };
        let mut kept_by_user = 0;
        for i in 0..8u64 {
            let fill: Vec<(usize, u8)> = if i == 0 { Vec::new() } else { vec![(i as usize, i as u8)] };
            let id = c.add(Place::at_exit(i * 10), i, i == 3, machine(), &slices(&ram(&fill)));
            if i == 3 {
                kept_by_user = id;
            }
            let all_but_newest_manual = c.list()[..c.list().len() - 1].iter().all(|k| k.manual);
            assert!(c.size() <= c.budget || all_but_newest_manual, "{} > {}", c.size(), c.budget);
        }
        assert!(c.thinned > 0);
        assert!(c.get(kept_by_user).is_some(), "a checkpoint the user took stays");
        for k in c.list() {
            let i = k.seq() / 10;
            let want = if i == 0 { ram(&[]) } else { ram(&[(i as usize, i as u8)]) };
            assert_eq!(c.ram_of(k.id).unwrap(), want, "checkpoint at {}", k.seq());
        }
    }
}
