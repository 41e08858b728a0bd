//! The table of requests waiting for a reply, by 16-bit id.

/// Every id of the 16-bit space may be in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 1 << 16;

/// A slab indexed by request id: O(1) insert and remove, no hashing. Freed
/// ids are handed out again first, so the table stays as small as the
/// largest number of requests in flight at once.
pub(crate) struct InFlight<T> {
    slots: Vec<Option<T>>,
    free: Vec<u16>,
    len: usize,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        InFlight {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> InFlight<T> {
    /// Stores `value` under a free id; `None` when all 65536 are taken.
    pub fn insert(&mut self, value: T) -> Option<u16> {
        let id = match self.free.pop() {
            Some(id) => id,
            None if self.slots.len() < MAX_IN_FLIGHT => {
                self.slots.push(None);
                (self.slots.len() - 1) as u16
            }
            None => return None,
        };
        self.slots[usize::from(id)] = Some(value);
        self.len += 1;
        Some(id)
    }

    /// Takes the value of `id` out, freeing the id.
    pub fn remove(&mut self, id: u16) -> Option<T> {
        let v = self.slots.get_mut(usize::from(id))?.take()?;
        self.free.push(id);
        self.len -= 1;
        Some(v)
    }

    /// The value of `id`.
    pub fn get_mut(&mut self, id: u16) -> Option<&mut T> {
        self.slots.get_mut(usize::from(id))?.as_mut()
    }

    /// The value of `id`.
    pub fn get(&self, id: u16) -> Option<&T> {
        self.slots.get(usize::from(id))?.as_ref()
    }

    /// Takes out every value for which `pred` holds, freeing their ids.
    pub fn drain_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(&mut pred) {
                if let Some(v) = slot.take() {
                    out.push(v);
                    // `slots` never holds more than 65536 entries.
                    self.free.push(i as u16);
                    self.len -= 1;
                }
            }
        }
        out
    }

    /// Every taken id and its value, by id.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (u16, &T)> {
        self.slots
            .iter()
            .enumerate()
            // `slots` never holds more than 65536 entries.
            .filter_map(|(i, s)| s.as_ref().map(|v| (i as u16, v)))
    }

    /// How many ids are taken.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Takes every value out and frees every id.
    pub fn drain(&mut self) -> Vec<T> {
        let out: Vec<T> = self.slots.drain(..).flatten().collect();
        self.free.clear();
        self.len = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_while_taken_and_reused_when_freed() {
        let mut t = InFlight::default();
        let ids: Vec<u16> = (0..MAX_IN_FLIGHT).map(|i| t.insert(i).unwrap()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), MAX_IN_FLIGHT);
        assert_eq!(t.len(), MAX_IN_FLIGHT);
        assert_eq!(t.insert(0), None);
        assert_eq!(t.remove(7), Some(7));
        assert_eq!(t.remove(7), None);
        assert_eq!(t.insert(99), Some(7));
        assert_eq!(t.drain().len(), MAX_IN_FLIGHT);
        assert_eq!(t.len(), 0);
        assert_eq!(t.insert(1), Some(0));
    }
}
