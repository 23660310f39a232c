//! Checkpoints in memory: numbered states to go back to. The newest keeps the pages of RAM that
//! are not zeros; each older one keeps only the pages where it differs from the one after it
//! (reverse deltas, as a backup tool keeps increments). Which pages to look at comes from the
//! pages written since RAM was last a checkpoint's (KVM's dirty log and kvmscope's own writes,
//! handed in by [`Checkpoints::note_written`]) and the deltas between that checkpoint and the
//! one to take or restore: a checkpoint or a restore costs what the guest wrote, not the size of
//! RAM. Where that is not known (the first checkpoint, after a snapshot file was read in) RAM is
//! compared page by page — only the pages the host has given the guest. Memory for them is bounded: past
//! the budget the oldest automatic ones are thinned, every other one merged into its neighbour,
//! so that the timeline keeps points far back, fewer of them; a checkpoint that cannot fit even
//! so is refused.

use std::collections::{BTreeMap, BTreeSet};

use super::MachineState;
#[cfg(test)]
use super::RamImage;
use crate::vmm::host_pages::touched_pages;
use crate::vmm::timeline::Place;

/// A page of guest RAM.
pub const PAGE: usize = 4096;

/// Bytes checkpoints may hold, the newest's pages included (the budget the oldest are thinned to).
pub const DEFAULT_BUDGET: u64 = 2 << 30;

/// Pages by guest-physical address; an empty page stands for a page of zeros.
type Pages = BTreeMap<u64, Box<[u8]>>;

static ZEROS: [u8; PAGE] = [0; PAGE];

/// A checkpoint could not be kept.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused: it would hold {} of a {} budget{}",
    crate::vmm::memory::data_size(*needed),
    crate::vmm::memory::human_size(*budget),
    if *only_manual { " and only checkpoints you took are left to thin (:restore or monitor restore drops those after it)" } else { "" }
)]
pub struct OverBudget {
    pub needed: u64,
    pub budget: u64,
    pub only_manual: bool,
}

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
    /// Its mark in each writable disk's undo log (the disks go back with it); `None` once lost
    /// (the disks were taken back to before it since, and its mark with them): it is then
    /// reached by going forward from a checkpoint before it, which writes the disks again.
    pub disks: Option<Vec<u64>>,
    /// The exit breakpoints' matches when it was taken, by number.
    pub exit_hits: Vec<(u32, u64)>,
    /// The user changed the guest's registers or memory here: no checkpoint before it leads to
    /// this state by going forward (kept when thinning, as the user's own).
    pub changed: bool,
    /// The pages whose content differs in the next newer checkpoint, as they were here. Empty
    /// for the newest, whose RAM is [`Checkpoints::newest`].
    delta: Pages,
}

impl Checkpoint {
    /// The guest exits before it.
    pub fn seq(&self) -> u64 {
        self.place.exits
    }

    /// Bytes this checkpoint keeps of its own.
    pub fn size(&self) -> u64 {
        pages_size(&self.delta)
    }
}

fn pages_size(pages: &Pages) -> u64 {
    pages.values().map(|p| p.len() as u64).sum()
}

/// Every checkpoint of a run, oldest first (in the order they were taken).
pub struct Checkpoints {
    list: Vec<Checkpoint>,
    /// The newest checkpoint's RAM: its pages that are not zeros.
    newest: Pages,
    next_id: u32,
    pub budget: u64,
    /// Checkpoints merged away to stay in the budget.
    pub thinned: u64,
    /// The checkpoint guest RAM was last made or put back from, when known: RAM is its RAM but
    /// for the pages in `written`.
    base: Option<u32>,
    /// Pages written since RAM was `base`'s.
    written: BTreeSet<u64>,
    /// Why the last checkpoint kvmscope tried to take while the guest ran was not kept.
    pub refused: Option<String>,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            newest: Pages::new(),
            next_id: 1,
            budget: DEFAULT_BUDGET,
            thinned: 0,
            base: None,
            written: BTreeSet::new(),
            refused: None,
        }
    }
}

/// RAM as the checkpoints read and write it: (guest-physical address, bytes) per range.
pub type RamSlices<'a> = [(u64, &'a [u8])];

/// Each page of `bytes` that may not be zeros: the ones the host has given memory (the others
/// were never touched), every one when that cannot be told.
fn maybe_nonzero(bytes: &[u8]) -> Vec<bool> {
    let pages = bytes.len() / PAGE;
    touched_pages(bytes.as_ptr() as u64, bytes.len() as u64).unwrap_or_else(|| vec![true; pages])
}

/// Sets page `at` of `pages` to `content` (zeros: none kept).
fn set_page(pages: &mut Pages, at: u64, content: &[u8]) {
    if content.is_empty() || content == ZEROS {
        pages.remove(&at);
    } else {
        pages.insert(at, Box::from(content));
    }
}

/// Brings `newest` up to `now`, page by page; the pages that changed, as they were in `newest`.
/// Only those are copied: a checkpoint after few writes costs a read of what the guest touched.
fn advance(newest: &mut Pages, now: &RamSlices) -> Pages {
    let mut changed = Pages::new();
    for &(gpa, bytes) in now {
        let touched = maybe_nonzero(bytes);
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            let at = gpa + (i * PAGE) as u64;
            let kept = newest.get(&at);
            let page: &[u8] = if touched.get(i).copied().unwrap_or(true) { page } else { &ZEROS[..page.len()] };
            let same = match kept {
                Some(old) => **old == *page,
                None => page == &ZEROS[..page.len()],
            };
            if !same {
                changed.insert(at, kept.cloned().unwrap_or_default());
                set_page(newest, at, page);
            }
        }
    }
    changed
}

/// [`advance`] over the pages `at` alone (RAM is known to be `newest`'s elsewhere).
fn advance_pages(newest: &mut Pages, now: &RamSlices, at: &BTreeSet<u64>) -> Pages {
    let mut changed = Pages::new();
    for &gpa in at {
        let Some(page) = page_in(now, gpa) else { continue };
        let kept = newest.get(&gpa);
        let same = match kept {
            Some(old) => **old == *page,
            None => page == &ZEROS[..page.len()],
        };
        if !same {
            changed.insert(gpa, kept.cloned().unwrap_or_default());
            set_page(newest, gpa, page);
        }
    }
    changed
}

/// The page at `gpa` in `ram`, if RAM has it.
fn page_in<'a>(ram: &RamSlices<'a>, gpa: u64) -> Option<&'a [u8]> {
    let &(base, bytes) = ram.iter().find(|(base, bytes)| gpa >= *base && gpa - base < bytes.len() as u64)?;
    let at = (gpa - base) as usize;
    bytes.get(at..(at + PAGE).min(bytes.len()))
}

/// Writes `delta` over `pages`.
fn apply(pages: &mut Pages, delta: &Pages) {
    for (&at, page) in delta {
        set_page(pages, at, page);
    }
}

impl Checkpoints {
    /// Adds a checkpoint of `machine` and `ram` taken at `place`; its number. Past the budget
    /// the oldest automatic ones are thinned; if it still does not fit it is refused (and
    /// nothing changes).
    pub fn add(
        &mut self,
        place: Place,
        t_ns: u64,
        manual: bool,
        machine: MachineState,
        ram: &RamSlices,
    ) -> Result<u32, OverBudget> {
        let delta = match self.list.len().checked_sub(1).and_then(|newest| self.candidates(newest)) {
            Some(pages) => advance_pages(&mut self.newest, ram, &pages),
            None => advance(&mut self.newest, ram),
        };
        if let Some(newest) = self.list.last_mut() {
            newest.delta = delta;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.list.push(Checkpoint {
            id,
            place,
            t_ns,
            manual,
            machine,
            disks: Some(Vec::new()),
            exit_hits: Vec::new(),
            changed: false,
            delta: Pages::new(),
        });
        (self.base, self.written) = (Some(id), BTreeSet::new());
        self.thin();
        if self.size() > self.budget {
            let refused = OverBudget {
                needed: self.size(),
                budget: self.budget,
                only_manual: self.list[..self.list.len() - 1].iter().all(|c| c.manual),
            };
            self.remove(id);
            return Err(refused);
        }
        Ok(id)
    }

    /// Pages written since the last checkpoint taken or restored (KVM's dirty log, kvmscope's own
    /// writes): the next one looks at those.
    pub fn note_written(&mut self, pages: &[u64]) {
        // Before the first checkpoint there is nothing to keep them for.
        if self.base.is_some() {
            self.written.extend(pages.iter().map(|p| p & !(PAGE as u64 - 1)));
        }
    }

    /// RAM was changed in a way no log saw (a snapshot file read in): the next checkpoint or
    /// restore compares it whole.
    pub fn forget_base(&mut self) {
        (self.base, self.written) = (None, BTreeSet::new());
    }

    /// The pages where RAM may differ from the checkpoint at `to` in the list: those written since
    /// the base, and those where the base and it differ. `None` when the base is not known.
    fn candidates(&self, to: usize) -> Option<BTreeSet<u64>> {
        let base = self.list.iter().position(|c| Some(c.id) == self.base)?;
        let mut pages = self.written.clone();
        for c in &self.list[base.min(to)..base.max(to)] {
            pages.extend(c.delta.keys());
        }
        Some(pages)
    }

    /// Sets checkpoint `id`'s marks in the disks' undo logs.
    pub fn mark_disks(&mut self, id: u32, marks: Vec<u64>) {
        if let Some(c) = self.list.iter_mut().find(|c| c.id == id) {
            c.disks = Some(marks);
        }
    }

    /// The disks were taken back to `place`: the marks of the checkpoints not known before it
    /// point into what the undo logs no longer hold.
    pub fn lose_disk_marks_after(&mut self, place: &Place) {
        for c in &mut self.list {
            if !c.place.known_not_after(place) && c.disks.as_ref().is_some_and(|d| !d.is_empty()) {
                c.disks = None;
            }
        }
    }

    /// Checkpoint `id` holds a state the user changed (see [`Checkpoint::changed`]).
    pub fn set_changed(&mut self, id: u32) {
        if let Some(c) = self.list.iter_mut().find(|c| c.id == id) {
            c.changed = true;
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
        self.newest_among(|c| c.place.known_not_after(place))
    }

    /// The newest checkpoint known to come before `place`, not at it.
    pub fn before(&self, place: &Place) -> Option<&Checkpoint> {
        self.newest_among(|c| c.place.known_not_after(place) && c.place != *place)
    }

    /// The newest on the timeline of the usable checkpoints `pick` takes.
    pub fn newest_among(&self, pick: impl Fn(&Checkpoint) -> bool) -> Option<&Checkpoint> {
        let before = self.list.iter().filter(|c| c.disks.is_some() && pick(c));
        before.max_by(|a, b| match (a.place.known_not_after(&b.place), b.place.known_not_after(&a.place)) {
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => a.id.cmp(&b.id),
        })
    }

    /// Checkpoint `id`'s pages: the newest's, with the newer ones' deltas put back down to it.
    fn pages_of<'a>(&'a self, at: usize) -> impl Fn(u64) -> Option<&'a [u8]> + 'a {
        let mut deltas: std::collections::HashMap<u64, &[u8]> = std::collections::HashMap::new();
        for c in self.list[at..].iter().rev() {
            deltas.extend(c.delta.iter().map(|(&gpa, page)| (gpa, &page[..])));
        }
        move |gpa| match deltas.get(&gpa) {
            Some(page) => Some(*page).filter(|p| !p.is_empty()),
            None => self.newest.get(&gpa).map(|p| &p[..]),
        }
    }

    /// Checkpoint `id`'s RAM, whole, in ranges like `shape` (for the tests to compare).
    #[cfg(test)]
    pub fn ram_of(&self, id: u32, shape: &RamImage) -> Option<RamImage> {
        let at = self.list.iter().position(|c| c.id == id)?;
        let page_of = self.pages_of(at);
        let mut ram = shape.iter().map(|(gpa, b)| (*gpa, vec![0u8; b.len()])).collect::<RamImage>();
        for (gpa, bytes) in &mut ram {
            for (i, page) in bytes.chunks_mut(PAGE).enumerate() {
                if let Some(want) = page_of(*gpa + (i * PAGE) as u64) {
                    page.copy_from_slice(&want[..page.len()]);
                }
            }
        }
        Some(ram)
    }

    /// Sets one byte of the newest checkpoint's RAM (the guest's own byte under an int3 of
    /// kvmscope's).
    pub fn poke_newest(&mut self, gpa: u64, byte: u8) {
        let at = gpa & !(PAGE as u64 - 1);
        let page = self.newest.entry(at).or_insert_with(|| Box::from(&ZEROS[..]));
        page[(gpa - at) as usize] = byte;
    }

    /// Writes checkpoint `id`'s RAM into `ram` (same ranges), only the pages that differ: going
    /// back a short way writes little. Where the pages that may differ are known (see
    /// [`Checkpoints::note_written`]) only those are looked at; else every page the host has
    /// given the guest. The pages written, or `None` for no such checkpoint.
    pub fn restore_into(&mut self, id: u32, ram: &mut [(u64, &mut [u8])]) -> Option<usize> {
        let at = self.list.iter().position(|c| c.id == id)?;
        let written = self.write_pages_of(at, ram);
        (self.base, self.written) = (Some(id), BTreeSet::new());
        Some(written)
    }

    /// The restore of the checkpoint at `at` in the list: the pages written.
    fn write_pages_of(&self, at: usize, ram: &mut [(u64, &mut [u8])]) -> usize {
        let candidates = self.candidates(at);
        let page_of = self.pages_of(at);
        let mut written = 0;
        let mut put = |page: &mut [u8], want: &[u8]| {
            if *page != want[..page.len()] {
                page.copy_from_slice(&want[..page.len()]);
                written += 1;
            }
        };
        for (gpa, dst) in ram.iter_mut() {
            let range = *gpa..*gpa + dst.len() as u64;
            match &candidates {
                Some(pages) => {
                    for &p in pages.range(range) {
                        let from = (p - *gpa) as usize;
                        let end = (from + PAGE).min(dst.len());
                        put(&mut dst[from..end], page_of(p).unwrap_or(&ZEROS[..]));
                    }
                }
                None => {
                    let touched = maybe_nonzero(dst);
                    for (i, page) in dst.chunks_mut(PAGE).enumerate() {
                        let want = page_of(*gpa + (i * PAGE) as u64).unwrap_or(&ZEROS[..]);
                        if !touched.get(i).copied().unwrap_or(true) && want == ZEROS {
                            continue;
                        }
                        put(page, want);
                    }
                }
            }
        }
        written
    }

    /// Drops the checkpoints not known to come before `id` on the timeline (going back to it
    /// and running on makes another future).
    pub fn keep_not_after(&mut self, id: u32) {
        let Some(place) = self.get(id).map(|c| c.place) else { return };
        let later: Vec<u32> =
            self.list.iter().filter(|c| c.id != id && !c.place.known_not_after(&place)).map(|c| c.id).collect();
        for id in later.into_iter().rev() {
            self.remove(id);
        }
    }

    /// Drops the checkpoints taken at exit `exits` or later (`steps` 0), or at step `steps`
    /// after it or later (a stop it ran freely to after that exit may be later too): the guest
    /// took another path from there, so they belong to a future that is gone.
    pub fn drop_from(&mut self, exits: u64, steps: u64) {
        let after = |p: &Place| p.exits > exits || (p.exits == exits && (p.mark.is_some() || p.steps >= steps));
        let gone: Vec<u32> = self.list.iter().filter(|c| after(&c.place)).map(|c| c.id).collect();
        for id in gone.into_iter().rev() {
            self.remove(id);
        }
    }

    /// Removes checkpoint `id`, keeping every other one whole.
    fn remove(&mut self, id: u32) {
        let Some(at) = self.list.iter().position(|c| c.id == id) else { return };
        let removed = self.list.remove(at);
        if self.base == Some(id) {
            // RAM was the removed one's: it is the one that takes its place (the newer one, or the
            // older when it was the newest) but for the pages where the two differ.
            let heir = self.list.get(at).map(|c| (c.id, &removed.delta)).or_else(|| {
                let older = self.list.last()?;
                Some((older.id, &older.delta))
            });
            match heir {
                Some((heir, differ)) => {
                    self.written.extend(differ.keys());
                    self.base = Some(heir);
                }
                None => self.forget_base(),
            }
        }
        if at == self.list.len() {
            // The newest: the one before becomes it, its RAM back where the newest's was.
            if let Some(c) = self.list.last_mut() {
                apply(&mut self.newest, &std::mem::take(&mut c.delta));
            } else {
                self.newest.clear();
            }
        } else if at > 0 {
            // The older neighbour's delta led to the removed one; now it leads to the next:
            // its pages win, the removed one's fill in the rest.
            let older = &mut self.list[at - 1].delta;
            for (gpa, page) in removed.delta {
                older.entry(gpa).or_insert(page);
            }
        }
    }

    /// Bytes checkpoint `id` keeps of its own: its delta, or for the newest its pages.
    pub fn own_size(&self, id: u32) -> u64 {
        match self.list.last() {
            Some(newest) if newest.id == id => pages_size(&self.newest),
            _ => self.get(id).map_or(0, Checkpoint::size),
        }
    }

    /// Bytes held: the newest's pages and every delta.
    pub fn size(&self) -> u64 {
        pages_size(&self.newest) + self.list.iter().map(Checkpoint::size).sum::<u64>()
    }

    /// Merges old checkpoints away until the size is within the budget: of the automatic ones,
    /// every other from the oldest (a checkpoint's delta goes into the one before it).
    fn thin(&mut self) {
        while self.size() > self.budget && self.list.len() > 2 {
            // The oldest automatic checkpoint that has an older neighbour to merge into, else the
            // oldest if kvmscope took it.
            let automatic = |i: &usize| !self.list[*i].manual && !self.list[*i].changed;
            let Some(victim) = (1..self.list.len() - 1).find(automatic).or_else(|| Some(0).filter(automatic)) else {
                // Only checkpoints the user took are left to thin.
                break;
            };
            self.remove(self.list[victim].id);
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

    /// Every page of the test RAM, as the dirty log gives them when all were written.
    fn all_written(c: &mut Checkpoints) {
        c.note_written(&(0..8).map(|p| 0x1000 + p * PAGE as u64).collect::<Vec<_>>());
    }

    /// A checkpoint of RAM filled as `fill` says, every page told written since the last.
    fn add(c: &mut Checkpoints, exits: u64, manual: bool, fill: &[(usize, u8)]) -> Result<u32, OverBudget> {
        all_written(c);
        c.add(Place::at_exit(exits), exits, manual, machine(), &slices(&ram(fill)))
    }

    #[test]
    fn older_checkpoints_keep_only_the_pages_that_changed_and_come_back_whole() {
        let mut c = Checkpoints::default();
        let shape = ram(&[]);
        let a = add(&mut c, 10, true, &[(0, 1)]).unwrap();
        let b = add(&mut c, 20, false, &[(0, 2), (3, 7)]).unwrap();
        let d = add(&mut c, 30, false, &[(0, 2), (3, 8), (5, 9)]).unwrap();
        assert_eq!(c.get(a).unwrap().size(), PAGE as u64, "page 0 differs from b (page 3 was zeros: kept as such)");
        assert_eq!(c.get(b).unwrap().size(), PAGE as u64, "page 3 differs from d, page 5 was zeros");
        assert_eq!(c.size(), 5 * PAGE as u64, "the newest's three pages that are not zeros, and two");
        assert_eq!(c.ram_of(a, &shape).unwrap(), ram(&[(0, 1)]));
        assert_eq!(c.ram_of(b, &shape).unwrap(), ram(&[(0, 2), (3, 7)]));
        assert_eq!(c.ram_of(d, &shape).unwrap(), ram(&[(0, 2), (3, 8), (5, 9)]));
        assert_eq!(c.anchor_for(&Place::at_exit(25)).map(|k| k.id), Some(b));
        assert!(c.anchor_for(&Place::at_exit(5)).is_none());
        // Going back to b: d is another future now.
        c.keep_not_after(b);
        assert_eq!(c.list().len(), 2);
        assert_eq!(c.ram_of(b, &shape).unwrap(), ram(&[(0, 2), (3, 7)]));
        assert_eq!(c.ram_of(a, &shape).unwrap(), ram(&[(0, 1)]));
        // The guest took another path from exit 15: b is gone, a stays.
        c.drop_from(15, 0);
        assert_eq!(c.list().iter().map(|k| k.id).collect::<Vec<_>>(), [a]);
        assert_eq!(c.ram_of(a, &shape).unwrap(), ram(&[(0, 1)]));
    }

    #[test]
    fn restoring_writes_only_the_pages_that_differ() {
        let mut c = Checkpoints::default();
        let a = add(&mut c, 10, true, &[(0, 1)]).unwrap();
        add(&mut c, 20, false, &[(0, 2), (3, 7)]).unwrap();
        let mut guest = ram(&[(0, 2), (3, 7), (6, 5)]);
        all_written(&mut c);
        let mut view: Vec<(u64, &mut [u8])> = guest.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        assert_eq!(c.restore_into(a, &mut view), Some(3), "pages 0, 3 and 6");
        assert_eq!(guest, ram(&[(0, 1)]));
        let mut view: Vec<(u64, &mut [u8])> = guest.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        assert_eq!(c.restore_into(a, &mut view), Some(0), "already there");
        assert_eq!(c.restore_into(99, &mut view), None);
    }

    #[test]
    fn with_the_written_pages_known_only_those_are_looked_at() {
        let mut c = Checkpoints::default();
        let shape = ram(&[]);
        let a = add(&mut c, 10, false, &[(0, 1), (2, 4)]).unwrap();
        // Page 1 written (told), page 5 changed behind the log's back (not told): only page 1
        // is seen, which shows the log is what decides.
        c.note_written(&[0x1000 + PAGE as u64 + 12]);
        let now = ram(&[(0, 1), (1, 3), (2, 4), (5, 9)]);
        let b = c.add(Place::at_exit(20), 20, false, machine(), &slices(&now)).unwrap();
        assert!(c.ram_of(b, &shape).unwrap() == ram(&[(0, 1), (1, 3), (2, 4)]), "page 5 unseen");
        assert_eq!(c.get(a).unwrap().size(), 0, "a differs from b at page 1, which was zeros");
        // Back to a from b's RAM with page 6 written since: pages 1 (the delta) and 6 go back.
        let mut guest = ram(&[(0, 1), (1, 3), (2, 4), (6, 8)]);
        c.note_written(&[0x1000 + 6 * PAGE as u64]);
        let mut view: Vec<(u64, &mut [u8])> = guest.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        assert_eq!(c.restore_into(a, &mut view), Some(2));
        assert!(guest == ram(&[(0, 1), (2, 4)]));
        // Forward to b again from a (RAM is a's): the delta between them is enough.
        let mut view: Vec<(u64, &mut [u8])> = guest.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        assert_eq!(c.restore_into(b, &mut view), Some(1));
        assert!(guest == ram(&[(0, 1), (1, 3), (2, 4)]));
        // The base dropped (b, the newest, thinned away by going back to a): RAM is b's, which
        // differs from a at page 1 — restoring a still finds it.
        c.keep_not_after(a);
        let mut view: Vec<(u64, &mut [u8])> = guest.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        assert_eq!(c.restore_into(a, &mut view), Some(1));
        assert!(guest == ram(&[(0, 1), (2, 4)]));
        // Not known (a snapshot read in): compared whole.
        guest = ram(&[(7, 7)]);
        c.forget_base();
        let mut view: Vec<(u64, &mut [u8])> = guest.iter_mut().map(|(g, b)| (*g, &mut b[..])).collect();
        assert_eq!(c.restore_into(a, &mut view), Some(3));
        assert!(guest == ram(&[(0, 1), (2, 4)]));
    }

    #[test]
    fn a_big_guest_that_touched_little_costs_little() {
        // 1 GiB of zeros the allocator never touched, and one page written.
        let mut big = vec![0u8; 1 << 30];
        big[5 * PAGE] = 1;
        let mut c = Checkpoints::default();
        let id = c.add(Place::at_exit(0), 0, false, machine(), &[(0, &big[..])]).unwrap();
        assert_eq!(c.size(), PAGE as u64, "one page kept");
        big[5 * PAGE] = 2;
        c.note_written(&[5 * PAGE as u64]);
        let mut view = [(0, &mut big[..])];
        assert_eq!(c.restore_into(id, &mut view), Some(1));
        assert_eq!(big[5 * PAGE], 1);
    }

    #[test]
    fn over_the_budget_automatic_checkpoints_merge_and_manual_ones_are_refused() {
        let mut c = Checkpoints { budget: 14 * PAGE as u64, ..Default::default() };
        let shape = ram(&[]);
        // Checkpoint i rewrites page i % 8 with i + 1: the RAM it keeps is each page's last write.
        let ram_after = |i: u64| -> Vec<(usize, u8)> {
            (0..=i).map(|j| ((j % 8) as usize, j as u8 + 1)).collect::<BTreeMap<_, _>>().into_iter().collect()
        };
        let mut kept_by_user = 0;
        for i in 0..16u64 {
            let id = add(&mut c, i * 10, i == 3, &ram_after(i)).unwrap();
            if i == 3 {
                kept_by_user = id;
            }
            assert!(c.size() <= c.budget, "{} > {}", c.size(), c.budget);
        }
        assert!(c.thinned > 0);
        assert!(c.get(kept_by_user).is_some(), "a checkpoint the user took stays");
        for k in c.list() {
            let want = ram(&ram_after(k.seq() / 10));
            assert_eq!(c.ram_of(k.id, &shape).unwrap(), want, "checkpoint at {}", k.seq());
        }
        // Only the user's are left and a new one does not fit: refused, nothing changed.
        let mut c = Checkpoints { budget: 4 * PAGE as u64, ..Default::default() };
        add(&mut c, 0, true, &[(0, 1), (1, 1)]).unwrap();
        add(&mut c, 10, true, &[(0, 2), (1, 2)]).unwrap();
        let before = (c.list().len(), c.size());
        let refused = add(&mut c, 20, true, &[(0, 3), (1, 3), (2, 3)]).unwrap_err();
        assert!(refused.only_manual && refused.needed > refused.budget, "{refused}");
        assert_eq!((c.list().len(), c.size()), before);
        assert_eq!(c.ram_of(c.list()[1].id, &shape).unwrap(), ram(&[(0, 2), (1, 2)]));
    }
}
