//! A bounded map that forgets gradually (CLOCK, "second chance"): each entry has a used bit, set
//! when it is read; a full map evicts the first entry the clock hand finds unused, clearing the
//! bits it passes. An entry read since the hand last passed it survives, so a flood of new
//! entries pushes out only entries nobody uses, one at a time, in O(1) amortised.

use std::collections::HashMap;
use std::hash::Hash;

struct Slot<K, V> {
    key: K,
    value: V,
    used: bool,
}

pub struct Clock<K, V> {
    slots: Vec<Slot<K, V>>,
    index: HashMap<K, usize>,
    hand: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Clock<K, V> {
    pub fn new(capacity: usize) -> Clock<K, V> {
        Clock { slots: Vec::new(), index: HashMap::new(), hand: 0, capacity: capacity.max(1) }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The value, marking it used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        let i = *self.index.get(key)?;
        let slot = &mut self.slots[i];
        slot.used = true;
        Some(&slot.value)
    }

    /// Adds or replaces. A new entry starts unused: it must be read to outlive the next pass of
    /// the hand, so entries inserted and never read again are the first to go.
    pub fn insert(&mut self, key: K, value: V) {
        if let Some(&i) = self.index.get(&key) {
            self.slots[i].value = value;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key.clone(), self.slots.len());
            self.slots.push(Slot { key, value, used: false });
            return;
        }
        // At most one full turn clears every bit, so this ends within two turns.
        loop {
            let slot = &mut self.slots[self.hand];
            if slot.used {
                slot.used = false;
                self.hand = (self.hand + 1) % self.slots.len();
                continue;
            }
            self.index.remove(&slot.key);
            self.index.insert(key.clone(), self.hand);
            *slot = Slot { key, value, used: false };
            self.hand = (self.hand + 1) % self.slots.len();
            return;
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.index.remove(key)?;
        let slot = self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key.clone(), i);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        Some(slot.value)
    }

    /// Keeps the entries for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.slots.retain(|s| keep(&s.key, &s.value));
        self.index = self.slots.iter().enumerate().map(|(i, s)| (s.key.clone(), i)).collect();
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.hand = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_entry_outlives_a_flood_of_new_ones() {
        let mut c = Clock::new(4);
        c.insert("hot", 0);
        for i in 0..1000 {
            assert_eq!(c.get(&"hot"), Some(&0), "after {i} others");
            c.insert(if i % 2 == 0 { "a" } else { "b" }, i);
            c.insert(Box::leak(format!("k{i}").into_boxed_str()) as &str, i);
            assert!(c.len() <= 4);
        }
    }

    #[test]
    fn eviction_is_one_at_a_time_and_unused_first() {
        let mut c = Clock::new(3);
        for k in [1, 2, 3] {
            c.insert(k, k);
        }
        c.get(&1);
        c.get(&3);
        c.insert(4, 4);
        assert_eq!(c.len(), 3);
        assert!(c.get(&2).is_none(), "the unused one went");
        assert!(c.get(&1).is_some() && c.get(&3).is_some() && c.get(&4).is_some());
    }

    #[test]
    fn remove_and_retain_keep_the_index_right() {
        let mut c = Clock::new(10);
        for k in 0..10 {
            c.insert(k, k * 10);
        }
        assert_eq!(c.remove(&3), Some(30));
        assert_eq!(c.remove(&3), None);
        c.retain(|k, _| k % 2 == 0);
        assert_eq!(c.len(), 5);
        for k in 0..10 {
            assert_eq!(c.get(&k).copied(), (k % 2 == 0).then_some(k * 10), "{k}");
        }
        c.insert(4, 1);
        assert_eq!(c.get(&4), Some(&1), "replaced in place");
        c.clear();
        assert!(c.is_empty());
    }
}
