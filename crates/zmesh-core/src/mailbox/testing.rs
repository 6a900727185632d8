//! A small mailbox entry for tests.

use super::{Position, Positioned};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Msg {
    pub order: u64,
    pub id: [u8; 16],
    /// Tells copies of one position apart where a test needs to.
    pub tag: u8,
}

impl Positioned for Msg {
    fn position(&self) -> Position {
        (self.order, self.id)
    }
}

/// An entry at `order` whose id is derived from it, so positions sort by `order`.
pub(crate) fn msg(order: u64) -> Msg {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&order.to_be_bytes());
    Msg { order, id, tag: 0 }
}
