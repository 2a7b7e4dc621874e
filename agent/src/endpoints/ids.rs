//! Endpoint ids: small numbers unique on the node, stable per file.

use std::collections::BTreeMap;

use super::EndpointError;

/// Highest endpoint id (Cilium's limit).
pub const MAX_ENDPOINT_ID: u16 = 4095;

/// Hands out endpoint ids in 1..=4095. The id of a key (an endpoint file
/// name) is derived from a hash of the key, so the same file gets the same
/// id across agent restarts unless two names collide; a collision takes the
/// next free id.
#[derive(Debug, Clone, Default)]
pub struct EndpointIds {
    by_key: BTreeMap<String, u16>,
    in_use: BTreeMap<u16, String>,
}

impl EndpointIds {
    /// An empty allocator.
    pub fn new() -> Self {
        EndpointIds::default()
    }

    /// The id of `key`, allocating one on first use.
    pub fn allocate(&mut self, key: &str) -> Result<u16, EndpointError> {
        if let Some(&id) = self.by_key.get(key) {
            return Ok(id);
        }
        let start = preferred_id(key);
        let id = (start..=MAX_ENDPOINT_ID)
            .chain(1..start)
            .find(|id| !self.in_use.contains_key(id))
            .ok_or(EndpointError::IdsExhausted)?;
        self.by_key.insert(key.to_string(), id);
        self.in_use.insert(id, key.to_string());
        Ok(id)
    }

    /// Gives `key` the id `id` (restored after a restart); false when the key or the
    /// id is already taken or the id is out of range.
    pub fn reserve(&mut self, key: &str, id: u16) -> bool {
        if !(1..=MAX_ENDPOINT_ID).contains(&id)
            || self.by_key.contains_key(key)
            || self.in_use.contains_key(&id)
        {
            return false;
        }
        self.by_key.insert(key.to_string(), id);
        self.in_use.insert(id, key.to_string());
        true
    }

    /// Frees the id of `key`.
    pub fn release(&mut self, key: &str) {
        if let Some(id) = self.by_key.remove(key) {
            self.in_use.remove(&id);
        }
    }

    /// The id of `key`, if allocated.
    pub fn get(&self, key: &str) -> Option<u16> {
        self.by_key.get(key).copied()
    }
}

/// FNV-1a of the key folded into 1..=4095.
fn preferred_id(key: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    // The remainder is below 4095, so it fits in u16.
    (hash % u32::from(MAX_ENDPOINT_ID)) as u16 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_unique() {
        let mut ids = EndpointIds::new();
        let a = ids.allocate("default_xwing.yaml").expect("free");
        let b = ids.allocate("default_tiefighter.yaml").expect("free");
        assert_ne!(a, b);
        assert_eq!(ids.allocate("default_xwing.yaml").expect("free"), a);
        assert!((1..=MAX_ENDPOINT_ID).contains(&a));

        // A fresh allocator gives the same id to the same name.
        let mut again = EndpointIds::new();
        assert_eq!(again.allocate("default_xwing.yaml").expect("free"), a);

        ids.release("default_xwing.yaml");
        assert_eq!(ids.get("default_xwing.yaml"), None);
    }

    #[test]
    fn collisions_take_the_next_free_id_and_exhaustion_is_an_error() {
        let mut ids = EndpointIds::new();
        for n in 0..MAX_ENDPOINT_ID {
            ids.allocate(&format!("pod-{n}")).expect("free");
        }
        assert_eq!(ids.in_use.len(), usize::from(MAX_ENDPOINT_ID));
        assert_eq!(ids.allocate("one-more"), Err(EndpointError::IdsExhausted));
    }
}
