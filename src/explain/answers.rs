//! Answers looked up, not built again: an access's explanation is a pure function of the access and
//! the little device state it depends on (the CMOS index, the PCI address latch, a UART's LCR), so
//! each device family says which state that is, and the answer given once for (access, that state)
//! is given again — with the state the access leaves behind — without formatting a word. A
//! recording's millions of exits hold a few thousand distinct answers: the exports, `--trace` and
//! the TUI look most of them up.

use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{Access, Explanation};

/// A device family whose answers depend on part of its state, which an access may change.
pub trait Family {
    /// The part of the family's state that an access's answer depends on, and that it changes.
    type State: Hash + Eq + Clone;
    fn state(&self, a: &Access) -> Self::State;
    fn set_state(&mut self, a: &Access, state: Self::State);
}

/// A family whose answers may depend on all of its state (a few bytes: an index register, a latch).
#[macro_export]
macro_rules! whole_state_family {
    ($family:ty) => {
        impl $crate::explain::answers::Family for $family {
            type State = $family;
            fn state(&self, _: &$crate::explain::Access) -> $family {
                self.clone()
            }
            fn set_state(&mut self, _: &$crate::explain::Access, state: $family) {
                *self = state;
            }
        }
    };
}

/// A family whose answers depend on the access alone (the local APIC, the legacy ports).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stateless;

impl Family for Stateless {
    type State = ();
    fn state(&self, _: &Access) {}
    fn set_state(&mut self, _: &Access, _: ()) {}
}

/// An explanation with its one-line form made once: the exports and `--trace` write it per exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub explanation: Explanation,
    /// [`Explanation::line`].
    pub line: String,
}

impl From<Explanation> for Explained {
    fn from(explanation: Explanation) -> Self {
        Self { line: explanation.line(), explanation }
    }
}

impl std::ops::Deref for Explained {
    type Target = Explanation;
    fn deref(&self) -> &Explanation {
        &self.explanation
    }
}

/// Distinct answers a family keeps before it starts again (a guest writing ever new values to a
/// port makes ever new answers; memory stays bounded: a few hundred bytes an answer, a few MB for
/// all the families of an explainer at worst).
const KEPT: usize = 4096;

/// One family's answers given so far: (access, the device that took it, the state before) to
/// (the answer, the state after).
type Key<S> = (Access, Option<&'static str>, S);

pub struct Answers<S> {
    given: FxHashMap<Key<S>, (Arc<Explained>, S)>,
}

impl<S> Default for Answers<S> {
    fn default() -> Self {
        Self { given: FxHashMap::default() }
    }
}

impl<S: Hash + Eq + Clone> Answers<S> {
    /// The answers kept.
    pub fn len(&self) -> usize {
        self.given.len()
    }

    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }

    /// `family`'s answer to access `a` taken by `device`: looked up, or made by `explain` (which
    /// also moves the family's state on) and kept.
    pub fn answer<F: Family<State = S>>(
        &mut self,
        family: &mut F,
        a: Access,
        device: Option<&'static str>,
        explain: impl FnOnce(&mut F) -> Explanation,
    ) -> Arc<Explained> {
        let key = (a, device, family.state(&a));
        if let Some((answer, after)) = self.given.get(&key) {
            family.set_state(&a, after.clone());
            return answer.clone();
        }
        let answer = Arc::new(Explained::from(explain(family)));
        if self.given.len() >= KEPT {
            self.given.clear();
        }
        self.given.insert(key, (answer.clone(), family.state(&a)));
        answer
    }
}
