//! A wrapper that injects failures into any bus, for tests: make `publish` fail (for every topic or
//! only some), make `check` fail, or make consumers' commits fail, as when the broker is down. Other crates use it to
//! test their behaviour when the bus is down (e.g. ingress answering 503).
//!
//! ```
//! # async fn demo(inner: std::sync::Arc<dyn intake_bus::Bus>) {
//! use intake_bus::faults::{FaultyBus, PublishFault};
//! let bus = FaultyBus::new(inner);
//! let faults = bus.faults();
//! faults.fail_publish_where(PublishFault::Unavailable, |topic| topic.ends_with(".validation"));
//! faults.fail_check(true);
//! // ... exercise the component with `std::sync::Arc::new(bus)` ...
//! faults.heal();
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::{
    Bus, BusError, Consumer, Delivery, OutgoingMessage, PartitionLag, ReceivedMessage,
    Subscription, TopicSpec,
};

/// How an injected publish failure looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFault {
    /// [`BusError::Unavailable`], as when the broker cannot be reached.
    Unavailable,
    /// [`BusError::Timeout`], as when the acknowledgement does not come in time. Returned at once.
    Timeout,
    /// No answer until the fault is healed; then the publish goes through.
    Hang,
}

type TopicFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Default)]
struct State {
    publish: Option<(PublishFault, Option<TopicFilter>)>,
    commit: bool,
    /// Commits are refused as for a partition reassigned to another member.
    commit_revoked: bool,
    /// `next()` fails with [`BusError::Unavailable`].
    next: bool,
    check: bool,
}

/// Switches for the faults of one [`FaultyBus`]; clone it freely.
#[derive(Clone, Default)]
pub struct FaultHandle {
    state: Arc<Mutex<State>>,
    injected: Arc<AtomicU64>,
    injected_commits: Arc<AtomicU64>,
    passed_commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("FaultHandle")
            .field(
                "publish",
                &state
                    .publish
                    .as_ref()
                    .map(|(fault, filter)| (fault, filter.is_some())),
            )
            .field("check", &state.check)
            .finish()
    }
}

impl FaultHandle {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every publish fails with `fault` until [`heal_publish`](Self::heal_publish).
    pub fn fail_publish(&self, fault: PublishFault) {
        self.state().publish = Some((fault, None));
    }

    /// Publishes to topics for which `topic_matches` is true fail with `fault`; others pass.
    pub fn fail_publish_where(
        &self,
        fault: PublishFault,
        topic_matches: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) {
        self.state().publish = Some((fault, Some(Arc::new(topic_matches))));
    }

    /// Publishes pass again.
    pub fn heal_publish(&self) {
        self.state().publish = None;
    }

    /// `check()` fails with [`BusError::Unavailable`] while `failing` is true.
    pub fn fail_check(&self, failing: bool) {
        self.state().check = failing;
    }

    /// Commits of every consumer of this bus fail with [`BusError::Unavailable`] while `failing`
    /// is true (as when the broker is unreachable); fetching goes on.
    pub fn fail_commit(&self, failing: bool) {
        self.state().commit = failing;
    }

    /// Commits of every consumer of this bus fail with [`BusError::NotOwned`] while `revoked` is
    /// true (as when the group gave the partitions to another member); fetching goes on.
    pub fn revoke_commits(&self, revoked: bool) {
        self.state().commit_revoked = revoked;
    }

    /// `next()` of every consumer of this bus fails with [`BusError::Unavailable`] while `failing`
    /// is true (as when the broker cannot be reached).
    pub fn fail_next(&self, failing: bool) {
        self.state().next = failing;
    }

    /// How many commits went through to the wrapped bus and succeeded so far.
    pub fn commits(&self) -> u64 {
        self.passed_commits.load(Ordering::Relaxed)
    }

    /// How many commits were failed on purpose so far.
    pub fn injected_commit_failures(&self) -> u64 {
        self.injected_commits.load(Ordering::Relaxed)
    }

    /// Removes every fault.
    pub fn heal(&self) {
        *self.state() = State::default();
    }

    /// How many publishes were failed on purpose so far.
    pub fn injected_publish_failures(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn publish_fault(&self, topic: &str) -> Option<PublishFault> {
        let state = self.state();
        let (fault, filter) = state.publish.as_ref()?;
        filter
            .as_ref()
            .is_none_or(|matches| matches(topic))
            .then_some(*fault)
    }
}

/// A bus that fails on demand (see the module doc). Test support, compiled always so other crates'
/// tests can use it without features.
pub struct FaultyBus {
    inner: Arc<dyn Bus>,
    faults: FaultHandle,
}

impl std::fmt::Debug for FaultyBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyBus")
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl FaultyBus {
    /// Wraps `inner`, with no fault switched on.
    pub fn new(inner: Arc<dyn Bus>) -> Self {
        Self {
            inner,
            faults: FaultHandle::default(),
        }
    }

    /// The switches of this bus.
    pub fn faults(&self) -> FaultHandle {
        self.faults.clone()
    }
}

#[async_trait]
impl Bus for FaultyBus {
    async fn publish(&self, message: OutgoingMessage) -> Result<Delivery, BusError> {
        match self.faults.publish_fault(&message.topic) {
            None => self.inner.publish(message).await,
            Some(PublishFault::Hang) => {
                self.faults.injected.fetch_add(1, Ordering::Relaxed);
                while self.faults.publish_fault(&message.topic) == Some(PublishFault::Hang) {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                self.inner.publish(message).await
            }
            Some(fault) => {
                self.faults.injected.fetch_add(1, Ordering::Relaxed);
                Err(match fault {
                    PublishFault::Unavailable => {
                        BusError::unavailable("injected fault: the bus is down")
                    }
                    PublishFault::Timeout | PublishFault::Hang => BusError::Timeout {
                        topic: message.topic,
                        timeout_ms: 0,
                    },
                })
            }
        }
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Consumer>, BusError> {
        let inner = self.inner.subscribe(subscription).await?;
        Ok(Box::new(FaultyConsumer {
            inner,
            faults: self.faults.clone(),
        }))
    }

    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        self.inner.create_topics(topics).await
    }

    async fn list_topics(&self) -> Result<Vec<String>, BusError> {
        self.inner.list_topics().await
    }

    async fn check(&self) -> Result<(), BusError> {
        if self.faults.state().check {
            return Err(BusError::unavailable(
                "injected fault: the bus does not answer",
            ));
        }
        self.inner.check().await
    }
}

/// A consumer of a [`FaultyBus`]: passes through but for commits while they are set to fail.
struct FaultyConsumer {
    inner: Box<dyn Consumer>,
    faults: FaultHandle,
}

#[async_trait]
impl Consumer for FaultyConsumer {
    async fn next(&mut self) -> Result<ReceivedMessage, BusError> {
        if self.faults.state().next {
            return Err(BusError::unavailable(
                "injected fault: the broker cannot be reached",
            ));
        }
        self.inner.next().await
    }

    async fn commit(&mut self, message: &ReceivedMessage) -> Result<(), BusError> {
        if self.faults.state().commit_revoked {
            self.faults.injected_commits.fetch_add(1, Ordering::Relaxed);
            return Err(BusError::NotOwned(
                "injected fault: the partition went to another member".into(),
            ));
        }
        if self.faults.state().commit {
            self.faults.injected_commits.fetch_add(1, Ordering::Relaxed);
            return Err(BusError::unavailable(
                "injected fault: the commit was not acknowledged",
            ));
        }
        let committed = self.inner.commit(message).await;
        if committed.is_ok() {
            self.faults.passed_commits.fetch_add(1, Ordering::Relaxed);
        }
        committed
    }

    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError> {
        self.inner.lag().await
    }
}
