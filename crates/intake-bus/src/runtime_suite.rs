//! The consumer runtime's suite: one test per promise of [`crate::runtime`], run by every driver
//! through [`runtime_contract_tests!`](crate::runtime_contract_tests) (embedded, librdkafka's mock
//! cluster, the real broker), faults injected with [`FaultyBus`]. Feature `testsuite`.
//!
//! What was committed is read from outside: after the runtime stops, a marker is published and a
//! new member of the group reports the first message it receives (the oldest uncommitted one, or
//! the marker when everything was committed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code behind the testsuite feature: a broken promise fails the test"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use intake_testkit::poll;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::faults::{FaultHandle, FaultyBus, PublishFault};
use crate::runtime::{
    run, run_batches, BatchHandler, BatchSettings, Handled, Handler, RuntimeError, Settings,
};
use crate::testsuite::{fresh_topic, join, next_within, unique, WAIT};
use crate::{Bus, OutgoingMessage, ReceivedMessage, StartFrom, Subscription};

/// Runs every runtime case as its own `#[tokio::test]`; `$make_bus` as for
/// [`bus_contract_tests!`](crate::bus_contract_tests).
#[macro_export]
macro_rules! runtime_contract_tests {
    ($make_bus:expr) => {
        $crate::runtime_contract_tests!(@cases $make_bus;
            runtime_commits_nothing_past_an_unfinished_message,
            runtime_commits_everything_handled,
            runtime_handles_one_keys_messages_one_at_a_time_in_order,
            runtime_drops_a_revoked_commit_without_retrying,
            runtime_retries_refused_commits_while_consuming,
            runtime_messages_finished_within_the_commit_delay_share_a_commit,
            runtime_a_full_window_commits_at_once,
            runtime_cancel_ends_a_fetch_retry_at_once,
            runtime_cancel_ends_a_publish_retry_at_once,
            runtime_grace_lets_a_running_message_finish,
            runtime_handler_panic_stops_with_an_error,
            runtime_batches_are_committed_once_handled,
            runtime_a_backlog_fills_batches_up_to_max,
            runtime_an_abandoned_batch_is_delivered_again
        );
    };
    (@cases $make_bus:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let bus: ::std::sync::Arc<dyn $crate::Bus> = $make_bus.await;
                $crate::runtime_suite::$case(bus).await;
            }
        )+
    };
}

fn text(m: &ReceivedMessage) -> String {
    String::from_utf8_lossy(&m.value).into_owned()
}

/// Values handled, in the order their handling ended.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Seen {
    fn push(&self, v: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(v);
    }

    fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn wait_for(&self, n: usize, what: &str) {
        poll::until_true(WAIT, what, || async { self.all().len() >= n }).await;
    }
}

async fn publish_n(
    bus: &dyn Bus,
    topic: &str,
    prefix: &str,
    n: usize,
    key: impl Fn(usize) -> String,
) {
    for i in 0..n {
        bus.publish(OutgoingMessage::new(topic, format!("{prefix}{i}")).key(key(i)))
            .await
            .unwrap();
    }
}

fn subscription(group: &str, topic: &str) -> Subscription {
    Subscription {
        group: group.to_owned(),
        topics: vec![topic.to_owned()],
        start: StartFrom::Earliest,
    }
}

type Running = (CancellationToken, JoinHandle<Result<(), RuntimeError>>);

async fn start(
    bus: &dyn Bus,
    group: &str,
    topic: &str,
    handler: Arc<dyn Handler>,
    settings: Settings,
) -> Running {
    let consumer = bus.subscribe(subscription(group, topic)).await.unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(consumer, handler, settings, cancel.clone()));
    (cancel, task)
}

/// Cancels and returns what the runtime returned, panicking if that takes longer than `within`.
async fn stop(running: Running, within: Duration) -> Result<(), RuntimeError> {
    let (cancel, task) = running;
    cancel.cancel();
    tokio::time::timeout(within, task)
        .await
        .unwrap_or_else(|_| panic!("the runtime did not stop within {within:?} of the cancel"))
        .unwrap()
}

/// The first message a new member of `group` receives once a marker was published after
/// everything else: the oldest uncommitted message, or `marker`.
async fn first_for_next_member(bus: &dyn Bus, group: &str, topic: &str) -> String {
    bus.publish(OutgoingMessage::new(topic, "marker").key("marker"))
        .await
        .unwrap();
    // Asked of single-partition topics only: on several, the marker's partition could come first.
    let mut consumer = join(bus, group, topic, StartFrom::Earliest).await;
    text(&next_within(consumer.as_mut(), "the next member's first message").await)
}

/// Asserts that a new member of `group` starts after everything handled: all of it committed.
async fn assert_everything_committed(bus: &dyn Bus, group: &str, topic: &str) {
    assert_eq!(
        first_for_next_member(bus, group, topic).await,
        "marker",
        "everything handled was committed"
    );
}

/// Handles by recording; the message whose value is `hold` waits for the token and is abandoned.
struct Record {
    seen: Arc<Seen>,
    hold: Option<String>,
    delay: Duration,
}

impl Record {
    /// Records every message as it comes, holding none back.
    fn plain(seen: Arc<Seen>) -> Arc<Self> {
        Arc::new(Self {
            seen,
            hold: None,
            delay: Duration::ZERO,
        })
    }
}

/// `bus` behind the fault-injecting wrapper, with the wrapper's switches.
fn with_faults(bus: Arc<dyn Bus>) -> (Arc<dyn Bus>, FaultHandle) {
    let faulty = FaultyBus::new(bus);
    let faults = faulty.faults();
    (Arc::new(faulty), faults)
}

#[async_trait]
impl Handler for Record {
    async fn handle(&self, message: ReceivedMessage, cancel: CancellationToken) -> Handled {
        let value = text(&message);
        if self.hold.as_deref() == Some(value.as_str()) {
            cancel.cancelled().await;
            return Handled::Abandoned;
        }
        tokio::time::sleep(self.delay).await;
        self.seen.push(value);
        Handled::Done
    }
}

/// An unfinished message holds the commit of everything after it, however much of that is handled;
/// the next member receives them all again.
pub async fn runtime_commits_nothing_past_an_unfinished_message(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(bus.as_ref(), "rt-hold", 1).await;
    let group = unique("g");
    publish_n(bus.as_ref(), &topic, "m", 10, |i| format!("k{i}")).await;
    let seen = Arc::new(Seen::default());
    let handler = Arc::new(Record {
        seen: seen.clone(),
        hold: Some("m0".into()),
        delay: Duration::from_millis(5),
    });
    let running = start(
        bus.as_ref(),
        &group,
        &topic,
        handler,
        Settings::new("test", 16),
    )
    .await;
    seen.wait_for(9, "messages 1 to 9 handled").await;
    stop(running, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        first_for_next_member(bus.as_ref(), &group, &topic).await,
        "m0"
    );
}

/// Messages that end out of order are all committed once handled.
pub async fn runtime_commits_everything_handled(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(bus.as_ref(), "rt-all", 1).await;
    let group = unique("g");
    publish_n(bus.as_ref(), &topic, "m", 20, |i| format!("k{i}")).await;
    struct Reverse(Arc<Seen>);
    #[async_trait]
    impl Handler for Reverse {
        async fn handle(&self, message: ReceivedMessage, _: CancellationToken) -> Handled {
            // Earlier offsets take longer, so ends come out of order.
            let wait = 5 * (20 - (message.offset % 20)).unsigned_abs();
            tokio::time::sleep(Duration::from_millis(wait)).await;
            self.0.push(text(&message));
            Handled::Done
        }
    }
    let seen = Arc::new(Seen::default());
    let mut settings = Settings::new("test", 8);
    settings.per_partition = 4;
    let running = start(
        bus.as_ref(),
        &group,
        &topic,
        Arc::new(Reverse(seen.clone())),
        settings,
    )
    .await;
    seen.wait_for(20, "20 messages handled").await;
    // The last commit may still be on its way when the last handler ends: shutdown finishes it.
    stop(running, Duration::from_secs(10)).await.unwrap();
    let mut all = seen.all();
    assert_ne!(
        all,
        (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "handled concurrently, ending out of order"
    );
    all.sort_by_key(|v| v[1..].parse::<u32>().unwrap());
    assert_eq!(all, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert_everything_committed(bus.as_ref(), &group, &topic).await;
}

/// Messages with one key never overlap and keep their order; different keys run together.
pub async fn runtime_handles_one_keys_messages_one_at_a_time_in_order(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(bus.as_ref(), "rt-keys", 1).await;
    let group = unique("g");
    publish_n(bus.as_ref(), &topic, "m", 30, |i| format!("k{}", i % 3)).await;
    #[derive(Default)]
    struct Keyed {
        seen: Seen,
        running: Mutex<HashMap<String, usize>>,
        overlap: AtomicBool,
        together: AtomicBool,
    }
    #[async_trait]
    impl Handler for Arc<Keyed> {
        fn key(&self, message: &ReceivedMessage) -> Option<String> {
            message.key_str().map(str::to_owned)
        }
        async fn handle(&self, message: ReceivedMessage, _: CancellationToken) -> Handled {
            let key = message.key_str().unwrap().to_owned();
            {
                let mut running = self.running.lock().unwrap();
                let n = running.entry(key.clone()).or_default();
                *n += 1;
                if *n > 1 {
                    self.overlap.store(true, Ordering::SeqCst);
                }
                if running.values().filter(|n| **n > 0).count() > 1 {
                    self.together.store(true, Ordering::SeqCst);
                }
            }
            tokio::time::sleep(Duration::from_millis(
                10 + 7 * u64::try_from(message.offset % 4).unwrap(),
            ))
            .await;
            *self.running.lock().unwrap().get_mut(&key).unwrap() -= 1;
            self.seen.push(text(&message));
            Handled::Done
        }
    }
    let keyed = Arc::new(Keyed::default());
    let running = start(
        bus.as_ref(),
        &group,
        &topic,
        Arc::new(keyed.clone()),
        Settings::new("test", 16),
    )
    .await;
    keyed.seen.wait_for(30, "30 messages handled").await;
    stop(running, Duration::from_secs(10)).await.unwrap();
    assert!(
        !keyed.overlap.load(Ordering::SeqCst),
        "two messages of one key ran at once"
    );
    assert!(
        keyed.together.load(Ordering::SeqCst),
        "different keys never ran together"
    );
    for k in 0..3 {
        let of_key: Vec<String> = keyed
            .seen
            .all()
            .into_iter()
            .filter(|v| v[1..].parse::<usize>().unwrap() % 3 == k)
            .collect();
        let expected: Vec<String> = (0..30)
            .filter(|i| i % 3 == k)
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(of_key, expected, "key k{k} in order");
    }
}

/// A commit refused because the partition went elsewhere is not retried and stalls nothing.
pub async fn runtime_drops_a_revoked_commit_without_retrying(bus: Arc<dyn Bus>) {
    let (bus, faults) = with_faults(bus);
    let topic = fresh_topic(bus.as_ref(), "rt-revoked", 1).await;
    let group = unique("g");
    faults.revoke_commits(true);
    let seen = Arc::new(Seen::default());
    let handler = Record::plain(seen.clone());
    // Commits as messages finish, so that every refusal has happened once all are handled and a
    // later refusal can only be a retry.
    let settings = Settings {
        commit_delay: Duration::ZERO,
        ..Settings::new("test", 64)
    };
    let running = start(bus.as_ref(), &group, &topic, handler, settings).await;
    publish_n(bus.as_ref(), &topic, "m", 10, |i| format!("k{i}")).await;
    seen.wait_for(10, "10 messages handled while commits are refused")
        .await;
    poll::until_true(WAIT, "a commit refused", || async {
        faults.injected_commit_failures() > 0
    })
    .await;
    let refused = faults.injected_commit_failures();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        faults.injected_commit_failures(),
        refused,
        "a revoked commit was tried again"
    );
    faults.heal();
    // Consumption goes on, and the next commit lands.
    publish_n(bus.as_ref(), &topic, "n", 1, |_| "k".into()).await;
    seen.wait_for(11, "a message after the refusals").await;
    stop(running, Duration::from_secs(10)).await.unwrap();
    assert_everything_committed(bus.as_ref(), &group, &topic).await;
}

/// Messages that finish within the commit delay share one commit, made while the runtime runs.
pub async fn runtime_messages_finished_within_the_commit_delay_share_a_commit(bus: Arc<dyn Bus>) {
    let (bus, faults) = with_faults(bus);
    let topic = fresh_topic(bus.as_ref(), "rt-delay", 1).await;
    let group = unique("g");
    let seen = Arc::new(Seen::default());
    let handler = Record::plain(seen.clone());
    let settings = Settings {
        commit_delay: Duration::from_secs(3),
        ..Settings::new("test", 64)
    };
    let running = start(bus.as_ref(), &group, &topic, handler, settings).await;
    publish_n(bus.as_ref(), &topic, "m", 20, |i| format!("k{i}")).await;
    seen.wait_for(20, "20 messages handled").await;
    poll::until_true(WAIT, "a commit while the runtime runs", || async {
        faults.commits() > 0
    })
    .await;
    assert!(
        faults.commits() <= 2,
        "20 messages finished within the delay share their commits: {} commits",
        faults.commits()
    );
    stop(running, Duration::from_secs(10)).await.unwrap();
    assert_everything_committed(bus.as_ref(), &group, &topic).await;
}

/// Finished messages waiting for their commit do not hold the in-flight window: when it is full,
/// they are committed at once and fetching goes on.
pub async fn runtime_a_full_window_commits_at_once(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(bus.as_ref(), "rt-window", 1).await;
    let group = unique("g");
    let seen = Arc::new(Seen::default());
    let handler = Record::plain(seen.clone());
    let settings = Settings {
        commit_delay: Duration::from_secs(3600),
        ..Settings::new("test", 4)
    };
    let running = start(bus.as_ref(), &group, &topic, handler, settings).await;
    publish_n(bus.as_ref(), &topic, "m", 12, |i| format!("k{i}")).await;
    seen.wait_for(12, "12 messages handled through a window of 4")
        .await;
    stop(running, Duration::from_secs(10)).await.unwrap();
    assert_everything_committed(bus.as_ref(), &group, &topic).await;
}

/// Commits refused for now are owed and tried again while consumption goes on; they land.
pub async fn runtime_retries_refused_commits_while_consuming(bus: Arc<dyn Bus>) {
    let (bus, faults) = with_faults(bus);
    let topic = fresh_topic(bus.as_ref(), "rt-owed", 1).await;
    let group = unique("g");
    faults.fail_commit(true);
    let seen = Arc::new(Seen::default());
    let handler = Record::plain(seen.clone());
    let running = start(
        bus.as_ref(),
        &group,
        &topic,
        handler,
        Settings::new("test", 4),
    )
    .await;
    publish_n(bus.as_ref(), &topic, "m", 12, |i| format!("k{i}")).await;
    seen.wait_for(
        12,
        "12 messages handled (more than in flight) while commits fail",
    )
    .await;
    let before = faults.injected_commit_failures();
    poll::until_true(WAIT, "the owed commit tried again", || async {
        faults.injected_commit_failures() > before
    })
    .await;
    faults.heal();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(running, Duration::from_secs(10)).await.unwrap();
    assert_everything_committed(bus.as_ref(), &group, &topic).await;
}

/// A pause between fetch retries ends as soon as the cancel signal fires.
pub async fn runtime_cancel_ends_a_fetch_retry_at_once(bus: Arc<dyn Bus>) {
    let (bus, faults) = with_faults(bus);
    let topic = fresh_topic(bus.as_ref(), "rt-fetch", 1).await;
    let group = unique("g");
    faults.fail_next(true);
    let handler = Record::plain(Arc::new(Seen::default()));
    let running = start(
        bus.as_ref(),
        &group,
        &topic,
        handler,
        Settings::new("test", 4),
    )
    .await;
    // Long enough for the pauses to grow past a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let cancelled = Instant::now();
    stop(running, Duration::from_secs(5)).await.unwrap();
    assert!(
        cancelled.elapsed() < Duration::from_millis(500),
        "stopped {:?} after the cancel",
        cancelled.elapsed()
    );
}

/// A publish retried while the bus refuses it ([`crate::retry::publish`]) ends at once when
/// cancelled, with the last refusal; once the bus takes messages again, it goes through.
pub async fn runtime_cancel_ends_a_publish_retry_at_once(bus: Arc<dyn Bus>) {
    let (bus, faults) = with_faults(bus);
    let topic = fresh_topic(bus.as_ref(), "rt-publish", 1).await;
    faults.fail_publish(PublishFault::Unavailable);
    let cancel = CancellationToken::new();
    let (b, c, t) = (bus.clone(), cancel.clone(), topic.clone());
    let retrying = tokio::spawn(async move {
        crate::retry::publish(b.as_ref(), OutgoingMessage::new(t, b"refused".to_vec()), &c).await
    });
    // Long enough for several attempts and pauses past a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        faults.injected_publish_failures() >= 3,
        "tried again while refused: {}",
        faults.injected_publish_failures()
    );
    let cancelled = Instant::now();
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(5), retrying)
        .await
        .expect("the retry ended")
        .unwrap();
    assert!(
        cancelled.elapsed() < Duration::from_millis(500),
        "ended {:?} after the cancel",
        cancelled.elapsed()
    );
    assert!(outcome.is_err(), "a cancelled publish reports its refusal");
    faults.heal_publish();
    crate::retry::publish(
        bus.as_ref(),
        OutgoingMessage::new(topic, b"taken".to_vec()),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
}

/// With a grace period, a running message finishes after the cancel and is committed.
pub async fn runtime_grace_lets_a_running_message_finish(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(bus.as_ref(), "rt-grace", 1).await;
    let group = unique("g");
    publish_n(bus.as_ref(), &topic, "m", 1, |_| "k".into()).await;
    struct Slow(Arc<Seen>);
    #[async_trait]
    impl Handler for Slow {
        async fn handle(&self, message: ReceivedMessage, _: CancellationToken) -> Handled {
            self.0.push(format!("started {}", text(&message)));
            tokio::time::sleep(Duration::from_millis(700)).await;
            self.0.push(text(&message));
            Handled::Done
        }
    }
    let seen = Arc::new(Seen::default());
    let mut settings = Settings::new("test", 4);
    settings.grace = Duration::from_secs(20);
    let running = start(
        bus.as_ref(),
        &group,
        &topic,
        Arc::new(Slow(seen.clone())),
        settings,
    )
    .await;
    seen.wait_for(1, "the message started").await;
    stop(running, Duration::from_secs(10)).await.unwrap();
    assert_eq!(seen.all(), vec!["started m0".to_owned(), "m0".to_owned()]);
    assert_everything_committed(bus.as_ref(), &group, &topic).await;
}

/// A panicking handler stops the runtime with an error naming the message; what ended before it
/// is committed, it is delivered again.
pub async fn runtime_handler_panic_stops_with_an_error(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(bus.as_ref(), "rt-panic", 1).await;
    let group = unique("g");
    publish_n(bus.as_ref(), &topic, "m", 6, |i| format!("k{i}")).await;
    struct Boom;
    #[async_trait]
    impl Handler for Boom {
        async fn handle(&self, message: ReceivedMessage, _: CancellationToken) -> Handled {
            assert_ne!(text(&message), "m3", "boom");
            Handled::Done
        }
    }
    let mut settings = Settings::new("test", 1);
    settings.per_partition = 1;
    let (_cancel, task) = start(bus.as_ref(), &group, &topic, Arc::new(Boom), settings).await;
    let outcome = tokio::time::timeout(WAIT, task)
        .await
        .expect("the runtime stops by itself")
        .unwrap();
    match outcome {
        Err(RuntimeError::Panicked { offset, panic, .. }) => {
            assert!(panic.contains("boom"), "{panic}");
            assert!(offset >= 0);
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(
        first_for_next_member(bus.as_ref(), &group, &topic).await,
        "m3"
    );
}

/// Batch form: batches up to their size, in order, committed once handled.
pub async fn runtime_batches_are_committed_once_handled(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(bus.as_ref(), "rt-batches", 1).await;
    let group = unique("g");
    publish_n(bus.as_ref(), &topic, "m", 25, |i| format!("k{i}")).await;
    struct Batches(Arc<Seen>, Mutex<Vec<usize>>);
    #[async_trait]
    impl BatchHandler for Batches {
        async fn handle_batch(&self, batch: Vec<ReceivedMessage>, _: CancellationToken) -> Handled {
            self.1.lock().unwrap().push(batch.len());
            tokio::time::sleep(Duration::from_millis(30)).await;
            for m in &batch {
                self.0.push(text(m));
            }
            Handled::Done
        }
    }
    let seen = Arc::new(Seen::default());
    let handler = Arc::new(Batches(seen.clone(), Mutex::new(Vec::new())));
    let consumer = bus.subscribe(subscription(&group, &topic)).await.unwrap();
    let cancel = CancellationToken::new();
    let settings = BatchSettings {
        name: "test",
        size: 10,
        max: 10,
        wait: Duration::from_millis(200),
        grace: Duration::ZERO,
        lag: None,
    };
    let task = tokio::spawn(run_batches(
        consumer,
        handler.clone(),
        settings,
        cancel.clone(),
    ));
    seen.wait_for(25, "25 messages handled").await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        seen.all(),
        (0..25).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    let sizes = handler.1.lock().unwrap().clone();
    assert!(sizes.iter().all(|n| *n <= 10), "{sizes:?}");
    assert_everything_committed(bus.as_ref(), &group, &topic).await;
}

/// Batch form: while a batch is handled the next one keeps filling past `size` up to `max`, so a
/// backlog goes in large batches, in order, and a lone message still goes alone within `wait`.
pub async fn runtime_a_backlog_fills_batches_up_to_max(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(bus.as_ref(), "rt-batch-max", 1).await;
    let group = unique("g");
    struct Gated {
        seen: Arc<Seen>,
        sizes: Mutex<Vec<usize>>,
        gate: tokio::sync::Semaphore,
    }
    #[async_trait]
    impl BatchHandler for Gated {
        async fn handle_batch(&self, batch: Vec<ReceivedMessage>, _: CancellationToken) -> Handled {
            self.sizes.lock().unwrap().push(batch.len());
            // The first batch waits until the test has published the backlog.
            self.gate.acquire().await.unwrap().forget();
            self.gate.add_permits(1);
            for m in &batch {
                self.seen.push(text(m));
            }
            Handled::Done
        }
    }
    let seen = Arc::new(Seen::default());
    let handler = Arc::new(Gated {
        seen: seen.clone(),
        sizes: Mutex::new(Vec::new()),
        gate: tokio::sync::Semaphore::new(0),
    });
    let consumer = bus.subscribe(subscription(&group, &topic)).await.unwrap();
    let cancel = CancellationToken::new();
    let settings = BatchSettings {
        name: "test",
        size: 10,
        max: 40,
        wait: Duration::from_millis(100),
        grace: Duration::ZERO,
        lag: None,
    };
    let task = tokio::spawn(run_batches(
        consumer,
        handler.clone(),
        settings,
        cancel.clone(),
    ));
    publish_n(bus.as_ref(), &topic, "m", 1, |i| format!("k{i}")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while handler.sizes.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no first batch");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The backlog gathers while the first batch is held, then the first batch goes.
    publish_n(bus.as_ref(), &topic, "b", 90, |i| format!("k{i}")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    handler.gate.add_permits(1);
    seen.wait_for(91, "the backlog handled").await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let expected: Vec<String> = std::iter::once("m0".to_owned())
        .chain((0..90).map(|i| format!("b{i}")))
        .collect();
    assert_eq!(seen.all(), expected);
    let sizes = handler.sizes.lock().unwrap().clone();
    assert_eq!(sizes[0], 1, "a lone message goes alone: {sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 40), "{sizes:?}");
    assert_eq!(sizes[1], 40, "the backlog fills a batch to max: {sizes:?}");
    assert_everything_committed(bus.as_ref(), &group, &topic).await;
}

/// Batch form: a batch left unfinished at shutdown is not committed.
pub async fn runtime_an_abandoned_batch_is_delivered_again(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(bus.as_ref(), "rt-batch-hold", 1).await;
    let group = unique("g");
    struct HoldSecond(Arc<Seen>);
    #[async_trait]
    impl BatchHandler for HoldSecond {
        async fn handle_batch(
            &self,
            batch: Vec<ReceivedMessage>,
            cancel: CancellationToken,
        ) -> Handled {
            if text(&batch[0]).starts_with('n') {
                self.0.push("holding".into());
                cancel.cancelled().await;
                return Handled::Abandoned;
            }
            for m in &batch {
                self.0.push(text(m));
            }
            Handled::Done
        }
    }
    let seen = Arc::new(Seen::default());
    let consumer = bus.subscribe(subscription(&group, &topic)).await.unwrap();
    let cancel = CancellationToken::new();
    let settings = BatchSettings {
        name: "test",
        size: 100,
        max: 100,
        wait: Duration::from_millis(100),
        grace: Duration::ZERO,
        lag: None,
    };
    let task = tokio::spawn(run_batches(
        consumer,
        Arc::new(HoldSecond(seen.clone())),
        settings,
        cancel.clone(),
    ));
    publish_n(bus.as_ref(), &topic, "m", 3, |i| format!("k{i}")).await;
    seen.wait_for(3, "the first batch handled").await;
    // Its commit may still be on its way: a moment, then the second batch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_n(bus.as_ref(), &topic, "n", 3, |i| format!("k{i}")).await;
    seen.wait_for(4, "the second batch started").await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first_for_next_member(bus.as_ref(), &group, &topic).await,
        "n0"
    );
}
