//! In-order commits while messages finish out of order: per partition, the offset committed is
//! the highest one below which every message is finished.

use std::collections::{HashMap, VecDeque};

use intake_bus::ReceivedMessage;

/// A message's place: topic, partition, offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    pub(crate) fn of(message: &ReceivedMessage) -> Self {
        Self {
            topic: message.topic.clone(),
            partition: message.partition,
            offset: message.offset,
        }
    }
}

#[derive(Debug)]
struct Slot {
    offset: i64,
    finished: bool,
    /// The message without its value (commits need only its position).
    marker: ReceivedMessage,
}

/// Messages in flight, per partition, in delivery order.
#[derive(Debug, Default)]
pub(crate) struct CommitTracker {
    partitions: HashMap<(String, i32), VecDeque<Slot>>,
}

impl CommitTracker {
    /// Records a delivered message as in flight.
    pub(crate) fn started(&mut self, message: &ReceivedMessage) {
        let marker = ReceivedMessage {
            value: Vec::new(),
            ..message.clone()
        };
        self.partitions
            .entry((message.topic.clone(), message.partition))
            .or_default()
            .push_back(Slot {
                offset: message.offset,
                finished: false,
                marker,
            });
    }

    /// Marks a message finished and returns the message to commit, if the partition's finished
    /// prefix grew.
    pub(crate) fn finished(&mut self, position: &Position) -> Option<ReceivedMessage> {
        let queue = self
            .partitions
            .get_mut(&(position.topic.clone(), position.partition))?;
        if let Some(slot) = queue.iter_mut().find(|s| s.offset == position.offset) {
            slot.finished = true;
        }
        let mut last = None;
        while queue.front().is_some_and(|s| s.finished) {
            last = queue.pop_front().map(|s| s.marker);
        }
        last
    }

    /// Messages delivered but not finished.
    pub(crate) fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|q| q.iter().filter(|s| !s.finished).count())
            .sum()
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

    #[test]
    fn commits_wait_for_earlier_offsets() {
        let mut t = CommitTracker::default();
        for offset in 0..3 {
            t.started(&message(0, offset));
        }
        t.started(&message(1, 7));
        assert_eq!(t.finished(&Position::of(&message(0, 2))), None);
        assert_eq!(t.finished(&Position::of(&message(0, 1))), None);
        assert_eq!(
            t.finished(&Position::of(&message(1, 7))).map(|m| m.offset),
            Some(7)
        );
        assert_eq!(t.in_flight(), 1);
        assert_eq!(
            t.finished(&Position::of(&message(0, 0))).map(|m| m.offset),
            Some(2)
        );
        assert_eq!(t.in_flight(), 0);
    }
}
