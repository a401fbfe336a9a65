//! Messages between their delivery and their commit, per partition: which may start now (at most
//! so many at once per partition, one message per key at a time, in delivery order), and how far
//! the partition's commit may go (the highest offset below which every message is done).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::ReceivedMessage;

/// A partition: topic and number.
pub(crate) type PartitionId = (String, i32);

/// Where a running message belongs, handed back when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub partition: PartitionId,
    /// The partition's bookkeeping it was started under: a partition forgotten (revoked) and
    /// delivered again has a new one, and a late end of the old run changes nothing.
    generation: u64,
    pub offset: i64,
    key: Option<String>,
}

/// A message ready to be handled.
#[derive(Debug)]
pub(crate) struct Start {
    pub message: ReceivedMessage,
    pub ticket: Ticket,
}

#[derive(Debug)]
enum Slot {
    /// Delivered, waiting for its turn.
    Waiting,
    Running,
    /// Handled; the message without its value, for the commit.
    Done(ReceivedMessage),
    /// Left unfinished (shutdown): neither it nor anything after it is committed.
    Abandoned,
}

#[derive(Debug, Default)]
struct Partition {
    generation: u64,
    slots: BTreeMap<i64, Slot>,
    waiting: VecDeque<(ReceivedMessage, Option<String>)>,
    running: usize,
    /// Running messages per key.
    keys: HashMap<String, usize>,
    /// The latest copy of each booked offset the bus delivered again (a rebalance sends a
    /// partition back from its committed offset): if the booking turns out stale (a commit refused
    /// as not owned), these copies are what the partition's new run must handle.
    redelivered: BTreeMap<i64, (ReceivedMessage, Option<String>)>,
}

/// Every partition's messages in flight.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    partitions: HashMap<PartitionId, Partition>,
    generations: u64,
    /// Delivered and not yet passed by a commit.
    count: usize,
}

impl InFlight {
    /// Messages delivered and not yet passed by a commit (waiting, running, or done behind an
    /// unfinished one).
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Messages being handled.
    pub(crate) fn running(&self) -> usize {
        self.partitions.values().map(|p| p.running).sum()
    }

    /// Books a delivered message; `key` orders it behind a running message with the same key.
    pub(crate) fn deliver(&mut self, message: ReceivedMessage, key: Option<String>) -> PartitionId {
        let id = (message.topic.clone(), message.partition);
        let partition = match self.partitions.get_mut(&id) {
            Some(p) => p,
            None => {
                self.generations += 1;
                let generation = self.generations;
                self.partitions.entry(id.clone()).or_insert(Partition {
                    generation,
                    ..Partition::default()
                })
            }
        };
        // A redelivery of an offset still booked (the bus delivered it again) replaces nothing: the
        // booked one decides the commit. The copy is kept in case the booking is forgotten.
        if partition.slots.contains_key(&message.offset) {
            partition.redelivered.insert(message.offset, (message, key));
            return id;
        }
        partition.slots.insert(message.offset, Slot::Waiting);
        // In offset order: a partition booked afresh (see `forget`) may be delivered from an
        // earlier offset than the messages it kept.
        let at = partition
            .waiting
            .iter()
            .rposition(|(m, _)| m.offset < message.offset)
            .map_or(0, |i| i + 1);
        partition.waiting.insert(at, (message, key));
        self.count += 1;
        id
    }

    /// The messages of `id` that may start now, with at most `limit` running in the partition.
    pub(crate) fn startable(&mut self, id: &PartitionId, limit: usize) -> Vec<Start> {
        let Some(p) = self.partitions.get_mut(id) else {
            return Vec::new();
        };
        let mut starts = Vec::new();
        while p.running < limit {
            let Some((_, key)) = p.waiting.front() else {
                break;
            };
            if key.as_ref().is_some_and(|k| p.keys.contains_key(k)) {
                break;
            }
            let Some((message, key)) = p.waiting.pop_front() else {
                break;
            };
            if let Some(k) = &key {
                *p.keys.entry(k.clone()).or_default() += 1;
            }
            p.running += 1;
            p.slots.insert(message.offset, Slot::Running);
            starts.push(Start {
                ticket: Ticket {
                    partition: id.clone(),
                    generation: p.generation,
                    offset: message.offset,
                    key,
                },
                message,
            });
        }
        starts
    }

    /// Books the end of a started message: `done` (handled) or not (abandoned). `marker` is the
    /// message (its value is not needed). False if the partition was forgotten since it started.
    pub(crate) fn end(&mut self, ticket: &Ticket, mut marker: ReceivedMessage, done: bool) -> bool {
        let Some(p) = self.partitions.get_mut(&ticket.partition) else {
            return false;
        };
        if p.generation != ticket.generation {
            return false;
        }
        p.running = p.running.saturating_sub(1);
        if let Some(k) = &ticket.key {
            if let Some(n) = p.keys.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    p.keys.remove(k);
                }
            }
        }
        marker.value = Vec::new();
        let slot = if done {
            Slot::Done(marker)
        } else {
            Slot::Abandoned
        };
        p.slots.insert(ticket.offset, slot);
        true
    }

    /// Removes the partition's done prefix and returns its last message: what to commit, if the
    /// prefix grew.
    pub(crate) fn committable(&mut self, id: &PartitionId) -> Option<ReceivedMessage> {
        let p = self.partitions.get_mut(id)?;
        let mut last = None;
        while let Some(entry) = p.slots.first_entry() {
            if !matches!(entry.get(), Slot::Done(_)) {
                break;
            }
            if let Slot::Done(m) = entry.remove() {
                last = Some(m);
            }
            self.count -= 1;
        }
        if let Some(m) = &last {
            // Copies of offsets now committed are no longer needed.
            p.redelivered = p.redelivered.split_off(&(m.offset + 1));
        }
        if p.slots.is_empty() && p.running == 0 {
            self.partitions.remove(id);
        }
        last
    }

    /// Forgets the partition's bookkeeping after a commit was refused as not owned (the partition
    /// was reassigned since those messages were delivered): running ones that end later change
    /// nothing. What was delivered and not yet started, and the copies the bus delivered again
    /// meanwhile, are booked afresh and returned as the count: the partition may already be this
    /// member's again (a rebalance that gave it back), and then nothing else would deliver them.
    /// If it went elsewhere, they are handled twice at worst (at-least-once), and their commits
    /// are refused in turn.
    pub(crate) fn forget(&mut self, id: &PartitionId) -> usize {
        let Some(mut p) = self.partitions.remove(id) else {
            return 0;
        };
        self.count -= p.slots.len();
        let mut again = std::mem::take(&mut p.redelivered);
        for (message, key) in p.waiting.drain(..) {
            again.entry(message.offset).or_insert((message, key));
        }
        let n = again.len();
        for (message, key) in again.into_values() {
            self.deliver(message, key);
        }
        n
    }

    /// Drops every message not started yet (shutdown): they stay uncommitted and come again.
    pub(crate) fn drop_waiting(&mut self) -> usize {
        let mut dropped = 0;
        for p in self.partitions.values_mut() {
            for (m, _) in p.waiting.drain(..) {
                p.slots.insert(m.offset, Slot::Abandoned);
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(partition: i32, offset: i64) -> ReceivedMessage {
        ReceivedMessage {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            headers: Vec::new(),
            value: b"{}".to_vec(),
            timestamp_ms: None,
        }
    }

    fn deliver(f: &mut InFlight, partition: i32, offset: i64, key: Option<&str>) -> PartitionId {
        f.deliver(message(partition, offset), key.map(str::to_owned))
    }

    fn offsets(starts: &[Start]) -> Vec<i64> {
        starts.iter().map(|s| s.message.offset).collect()
    }

    fn end(f: &mut InFlight, start: &Start, done: bool) {
        assert!(f.end(&start.ticket, start.message.clone(), done));
    }

    #[test]
    fn a_forgotten_partition_handles_what_the_bus_delivered_again_meanwhile() {
        let mut f = InFlight::default();
        let p = deliver(&mut f, 0, 0, None);
        deliver(&mut f, 0, 1, None);
        deliver(&mut f, 0, 2, None);
        let first = f.startable(&p, 2);
        assert_eq!(offsets(&first), vec![0, 1]);
        // A rebalance gives the partition back from its committed offset 0: copies of booked
        // offsets replace nothing yet.
        for o in 0..3 {
            deliver(&mut f, 0, o, None);
        }
        assert_eq!(f.len(), 3);
        assert!(f.startable(&p, 2).is_empty(), "two are running");
        end(&mut f, &first[0], true);
        assert_eq!(f.committable(&p).map(|m| m.offset), Some(0));
        // Offset 1's commit is then refused as not owned: the booking is forgotten, and what was
        // delivered again (1, 2) is handled in the partition's new run.
        assert_eq!(f.forget(&p), 2);
        assert!(
            !f.end(&first[1].ticket, first[1].message.clone(), true),
            "a stale end"
        );
        let again = f.startable(&p, 10);
        assert_eq!(offsets(&again), vec![1, 2]);
        for s in &again {
            end(&mut f, s, true);
        }
        assert_eq!(f.committable(&p).map(|m| m.offset), Some(2));
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn commits_follow_the_done_prefix_of_each_partition() {
        let mut f = InFlight::default();
        let p0 = deliver(&mut f, 0, 0, None);
        deliver(&mut f, 0, 1, None);
        deliver(&mut f, 0, 2, None);
        let p1 = deliver(&mut f, 1, 7, None);
        let s0 = f.startable(&p0, 10);
        let s1 = f.startable(&p1, 10);
        assert_eq!(offsets(&s0), vec![0, 1, 2]);
        end(&mut f, &s0[2], true);
        end(&mut f, &s0[1], true);
        assert_eq!(f.committable(&p0), None);
        end(&mut f, &s1[0], true);
        assert_eq!(f.committable(&p1).map(|m| m.offset), Some(7));
        assert_eq!(f.len(), 3);
        end(&mut f, &s0[0], true);
        let commit = f.committable(&p0).unwrap();
        assert_eq!(commit.offset, 2);
        assert!(
            commit.value.is_empty(),
            "the commit marker does not keep the payload"
        );
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn the_partition_limit_and_keys_decide_what_starts() {
        let mut f = InFlight::default();
        let p = deliver(&mut f, 0, 0, Some("a"));
        deliver(&mut f, 0, 1, Some("b"));
        deliver(&mut f, 0, 2, Some("a"));
        deliver(&mut f, 0, 3, Some("c"));
        let first = f.startable(&p, 10);
        // The second "a" waits for the first, and what comes after it waits too (order kept).
        assert_eq!(offsets(&first), vec![0, 1]);
        end(&mut f, &first[1], true);
        assert!(f.startable(&p, 10).is_empty());
        end(&mut f, &first[0], true);
        let second = f.startable(&p, 1);
        assert_eq!(offsets(&second), vec![2], "limit of one running");
        assert!(f.startable(&p, 1).is_empty());
        end(&mut f, &second[0], true);
        assert_eq!(offsets(&f.startable(&p, 1)), vec![3]);
    }

    #[test]
    fn an_abandoned_message_holds_the_commit_of_everything_after_it() {
        let mut f = InFlight::default();
        let p = deliver(&mut f, 0, 0, None);
        deliver(&mut f, 0, 1, None);
        deliver(&mut f, 0, 2, None);
        let s = f.startable(&p, 2);
        end(&mut f, &s[0], true);
        end(&mut f, &s[1], false);
        assert_eq!(f.committable(&p).map(|m| m.offset), Some(0));
        assert_eq!(f.drop_waiting(), 1);
        assert_eq!(f.committable(&p), None);
    }

    #[test]
    fn a_forgotten_partition_ignores_the_late_end_of_its_old_messages() {
        let mut f = InFlight::default();
        let p = deliver(&mut f, 0, 0, Some("k"));
        deliver(&mut f, 0, 1, None);
        let old = f.startable(&p, 1);
        assert_eq!(f.forget(&p), 1);
        assert_eq!(f.len(), 1, "offset 1, never started, is booked afresh");
        // Delivered again after the partition came back.
        deliver(&mut f, 0, 0, Some("k"));
        let new = f.startable(&p, 1);
        assert!(!f.end(&old[0].ticket, old[0].message.clone(), true));
        assert_eq!(
            f.committable(&p),
            None,
            "the old run's end does not commit the new one"
        );
        end(&mut f, &new[0], true);
        assert_eq!(f.committable(&p).map(|m| m.offset), Some(0));
    }

    #[test]
    fn a_second_delivery_of_a_booked_offset_is_not_booked_twice() {
        let mut f = InFlight::default();
        let p = deliver(&mut f, 0, 5, None);
        deliver(&mut f, 0, 5, None);
        assert_eq!(f.len(), 1);
        assert_eq!(f.startable(&p, 10).len(), 1);
    }
}
