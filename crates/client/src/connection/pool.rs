//! The session's pool of nodes: the targets it may connect to, in order,
//! each with the id of the node it must reach when that is known.
//!
//! The pool lives here only. Targets arrive as a command (the builder's at
//! the start, more from `Client::add_targets` and cluster discovery); the
//! session picks an entry for each connection it asks the driver to make,
//! and checks, once the driver reports which node answered, that a learnt
//! entry reached the node it was learnt for.

use thingsdb_transport::Target;

use crate::error::{Error, TransportErrorKind};

/// One node of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolEntry {
    /// Where to connect.
    pub target: Target,
    /// The node this entry must reach, when known (learnt by discovery); a
    /// target the user gave may reach any node.
    pub node: Option<u32>,
}

/// The targets, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pool {
    targets: Vec<Target>,
    /// The node each target must reach, when known.
    nodes: Vec<Option<u32>>,
}

impl Pool {
    /// How many entries the pool holds.
    pub(crate) fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether the pool is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The target of entry `index`.
    pub(crate) fn target(&self, index: usize) -> Option<&Target> {
        self.targets.get(index)
    }

    /// Every target, in pool order.
    pub(crate) fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Adds entries; a target already in the pool keeps its place and
    /// takes the node id when one is given (a later discovery knows
    /// better).
    pub(crate) fn add(&mut self, more: impl IntoIterator<Item = PoolEntry>) {
        for e in more {
            match self.targets.iter().position(|t| *t == e.target) {
                Some(i) => {
                    if e.node.is_some() {
                        self.nodes[i] = e.node;
                    }
                }
                None => {
                    self.targets.push(e.target);
                    self.nodes.push(e.node);
                }
            }
        }
    }

    /// The entry after `index`, wrapping around.
    pub(crate) fn next(&self, index: usize) -> usize {
        (index + 1) % self.targets.len().max(1)
    }

    /// Checks that the connection made to entry `index` reached the right
    /// node: `got` is the id of the node that answered (`None` when not
    /// asked). A learnt entry that reaches another node is not that node
    /// (on one host, for example, every node's WebSocket port is guessed).
    pub(crate) fn check_node(&self, index: usize, got: Option<u32>) -> Result<(), Error> {
        let (Some(target), Some(want)) = (self.targets.get(index), self.nodes.get(index)) else {
            return Err(Error::BadArgument(format!("no pool entry {index}")));
        };
        match (*want, got) {
            (Some(want), Some(got)) if want != got => Err(Error::transport(
                TransportErrorKind::WrongNode,
                format!("{target} was learnt as node {want} but node {got} answered there"),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(port: u16, node: Option<u32>) -> PoolEntry {
        PoolEntry {
            target: Target::tcp("127.0.0.1", port),
            node,
        }
    }

    #[test]
    fn a_learnt_entry_must_reach_its_node() {
        let mut p = Pool::default();
        p.add([entry(9200, None), entry(9201, Some(1))]);
        assert!(p.check_node(0, Some(5)).is_ok(), "a given target: any node");
        assert!(p.check_node(1, Some(1)).is_ok());
        assert!(p.check_node(1, None).is_ok(), "not asked");
        let e = p.check_node(1, Some(0)).map_err(|e| e.to_string());
        assert!(
            e.as_ref()
                .is_err_and(|e| e.contains("learnt as node 1 but node 0")),
            "{e:?}"
        );
        assert!(p.check_node(2, None).is_err(), "no such entry");
    }

    #[test]
    fn targets_are_added_once_and_learn_their_node() {
        let mut p = Pool::default();
        p.add([entry(9200, None), entry(9201, None)]);
        p.add([entry(9201, Some(3)), entry(9202, None), entry(9200, None)]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.target(1), Some(&Target::tcp("127.0.0.1", 9201)));
        assert!(p.check_node(1, Some(2)).is_err(), "learnt node 3");
        // No id given: what was learnt stays.
        p.add([entry(9201, None)]);
        assert!(p.check_node(1, Some(2)).is_err());
        assert_eq!(p.next(0), 1);
        assert_eq!(p.next(2), 0);
        assert_eq!(Pool::default().next(0), 0);
    }
}
