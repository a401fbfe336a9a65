//! Which partition a published message goes to: a keyed message by the hash of its key, exactly as
//! Kafka's Java producer does (`toPositive(murmur2(key)) % partitions`), so one key always lands on
//! one partition and keeps its order; keyless messages take the topic's partitions in turn.

use std::collections::HashMap;

/// Kafka's `Utils.murmur2`: MurmurHash2, 32 bits, seed `0x9747b28c`, little-endian blocks.
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes at most i32::MAX bytes; the length only seeds the hash, wrapping like Java's int.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a message with `key` on a topic of `partitions` partitions (at least 1), as
/// Kafka's default partitioner chooses it.
pub(crate) fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Chooses partitions for one writer: by key hash, or in turn per topic for keyless messages.
#[derive(Debug, Default)]
pub(crate) struct Partitioner {
    /// Per topic, the partition the next keyless message takes.
    next: HashMap<String, i32>,
    /// Partition counts of topics read from the database: a topic is never deleted and never
    /// changes its count, so each is read once per writer instead of once per write.
    counts: HashMap<String, i32>,
}

impl Partitioner {
    /// The partition count of `topic`, if it was read before.
    pub(crate) fn count(&self, topic: &str) -> Option<i32> {
        self.counts.get(topic).copied()
    }

    /// Remembers the partition count of a topic that exists in the database (committed: a count
    /// read inside a transaction that creates the topic must not be remembered, as the
    /// transaction may roll back).
    pub(crate) fn remember(&mut self, topic: &str, partitions: i32) {
        self.counts.insert(topic.to_owned(), partitions);
    }

    pub(crate) fn choose(&mut self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32 {
        let partitions = partitions.max(1);
        match key {
            Some(key) => partition_for_key(key, partitions),
            None => {
                let turn = match self.next.get_mut(topic) {
                    Some(turn) => turn,
                    None => self.next.entry(topic.to_owned()).or_insert(0),
                };
                let chosen = *turn % partitions;
                *turn = (chosen + 1) % partitions;
                chosen
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        // Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, hash) in cases {
            assert_eq!(murmur2(data), hash, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn keys_map_to_a_partition_like_kafkas_default_partitioner() {
        // toPositive(murmur2) % n, computed from the vectors above.
        assert_eq!(
            partition_for_key(b"21", 4),
            (-973932308i32 & 0x7fff_ffff) % 4
        );
        assert_eq!(
            partition_for_key(b"foobar", 7),
            (-790332482i32 & 0x7fff_ffff) % 7
        );
        assert_eq!(partition_for_key(b"abc", 3), 479470107 % 3);
        assert_eq!(partition_for_key(b"anything", 1), 0);
        let mut p = Partitioner::default();
        let same: Vec<i32> = (0..5).map(|_| p.choose("t", Some(b"k-1"), 6)).collect();
        assert!(same.windows(2).all(|w| w[0] == w[1]), "{same:?}");
    }

    #[test]
    fn keyless_messages_take_the_partitions_in_turn_per_topic() {
        let mut p = Partitioner::default();
        let a: Vec<i32> = (0..7).map(|_| p.choose("a", None, 3)).collect();
        assert_eq!(a, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(p.choose("b", None, 2), 0, "each topic has its own turn");
        assert_eq!(p.choose("a", None, 3), 1);
        assert_eq!(p.choose("c", None, 1), 0);
        assert_eq!(p.choose("c", None, 1), 0);
    }
}
