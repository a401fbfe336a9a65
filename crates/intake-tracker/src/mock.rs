//! Mock traffic: realistic multi-service journeys published as status messages (the seeds'
//! `mock_payload` and load-test scripts), for demos and load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use intake_bus::{Bus, OutgoingMessage};
use intake_core::config::BusConfig;
use intake_core::messages::PayloadStatus;
use rand::Rng;

use crate::TrackerError;

/// What a mock run sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MockReport {
    pub payloads: usize,
    pub statuses: usize,
    pub elapsed: Duration,
    /// Request ids of the payloads, in order.
    pub request_ids: Vec<String>,
}

/// One step of a journey: who, with what source, which status, what message, how long after the
/// previous step.
struct Step {
    service: &'static str,
    source: Option<&'static str>,
    status: &'static str,
    msg: String,
    after_ms: i64,
}

fn step(
    service: &'static str,
    source: Option<&'static str>,
    status: &'static str,
    msg: impl Into<String>,
    after_ms: i64,
) -> Step {
    Step {
        service,
        source,
        status,
        msg: msg.into(),
        after_ms,
    }
}

/// A journey through ingress, a validator, puptoo and inventory, and an app; some fail on the way.
fn journey(rng: &mut impl Rng) -> Vec<Step> {
    let app = ["advisor", "compliance", "vulnerability", "drift"][rng.random_range(0..4)];
    let jitter = |rng: &mut dyn rand::RngCore, base: i64| base + (rng.next_u32() % 900) as i64;
    let mut steps = vec![
        step(
            "ingress",
            None,
            "received",
            "payload received by ingress",
            0,
        ),
        step(
            "ingress",
            None,
            "processing",
            format!("announced to {app}"),
            jitter(rng, 150),
        ),
    ];
    let roll: u32 = rng.random_range(0..100);
    if roll < 5 {
        steps.push(step("ingress", None, "rejected", format!("rejected by {app}: archive has no insights data; moved to insights-upload-rejected"), jitter(rng, 800)));
        return steps;
    }
    steps.push(step(
        "ingress",
        None,
        "success",
        format!("validated by {app}; announced on platform.upload.available"),
        jitter(rng, 600),
    ));
    steps.push(step(
        "puptoo",
        None,
        "received",
        "picked up for processing",
        jitter(rng, 200),
    ));
    steps.push(step(
        "puptoo",
        None,
        "processing",
        "extracting facts",
        jitter(rng, 1500),
    ));
    if roll < 10 {
        steps.push(step(
            "puptoo",
            None,
            "error",
            "failed to extract facts: insights-archive.txt missing",
            jitter(rng, 900),
        ));
        return steps;
    }
    steps.push(step(
        "puptoo",
        Some("inventory"),
        "processing",
        "sending to inventory",
        jitter(rng, 700),
    ));
    steps.push(step(
        "inventory",
        None,
        "received",
        "host upload received",
        jitter(rng, 300),
    ));
    steps.push(step(
        "inventory",
        None,
        "success",
        "host updated",
        jitter(rng, 1200),
    ));
    steps.push(step(
        "puptoo",
        Some("inventory"),
        "success",
        "inventory acknowledged",
        jitter(rng, 200),
    ));
    steps.push(step(
        "puptoo",
        None,
        "success",
        "facts extracted",
        jitter(rng, 100),
    ));
    steps.push(step(
        app,
        None,
        "received",
        "evaluation requested",
        jitter(rng, 400),
    ));
    steps.push(step(
        app,
        Some("engine"),
        "processing",
        "running rules",
        jitter(rng, 600),
    ));
    if roll < 15 {
        steps.push(step(
            app,
            None,
            "error",
            "rules engine timed out after 30s",
            jitter(rng, 3000),
        ));
    } else {
        steps.push(step(
            app,
            Some("engine"),
            "success",
            "rules evaluated",
            jitter(rng, 2500),
        ));
        steps.push(step(
            app,
            None,
            "success",
            "results stored",
            jitter(rng, 300),
        ));
    }
    steps
}

fn status_message(
    request_id: &str,
    tenant: (&str, &str),
    ids: (&str, &str),
    step: &Step,
    date: DateTime<Utc>,
) -> PayloadStatus {
    let with_ids = step.service != "ingress" || step.status == "success";
    PayloadStatus {
        service: step.service.to_owned(),
        source: step.source.map(str::to_owned),
        account: Some(tenant.0.to_owned()),
        org_id: Some(tenant.1.to_owned()),
        request_id: request_id.to_owned(),
        inventory_id: with_ids.then(|| ids.0.to_owned()),
        system_id: with_ids.then(|| ids.1.to_owned()),
        status: step.status.to_owned(),
        status_msg: Some(step.msg.clone()),
        date: intake_core::time::format(date),
    }
}

/// One status message of a mock journey, ready to publish: keyed by its request id.
#[derive(Debug, Clone)]
pub struct MockStatus {
    pub request_id: String,
    pub value: Vec<u8>,
}

/// Journeys in date order, made as they are taken, so a long run never holds them all: payload `n`
/// starts at `first + n × spacing`, and its statuses come out interleaved with its neighbours',
/// as real traffic does. No date is later than the moment it is made.
pub struct Journeys {
    rng: rand::rngs::ThreadRng,
    payloads: usize,
    made: usize,
    first: DateTime<Utc>,
    spacing: chrono::Duration,
    seq: u64,
    // Min-heap on (date, sequence): the earliest status made so far and not taken.
    waiting: std::collections::BinaryHeap<std::cmp::Reverse<(DateTime<Utc>, u64, WaitingStatus)>>,
    /// Request ids of the payloads made so far, in order.
    pub request_ids: Vec<String>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct WaitingStatus {
    request_id: String,
    value: Vec<u8>,
}

impl Journeys {
    /// `payloads` journeys, the first starting at `first`, one every `spacing`.
    pub fn new(payloads: usize, first: DateTime<Utc>, spacing: Duration) -> Self {
        Self {
            rng: rand::rng(),
            payloads,
            made: 0,
            first,
            spacing: chrono::Duration::from_std(spacing).unwrap_or(chrono::Duration::zero()),
            seq: 0,
            waiting: std::collections::BinaryHeap::new(),
            request_ids: Vec::with_capacity(payloads),
        }
    }

    fn start_of(&self, n: usize) -> DateTime<Utc> {
        self.first + self.spacing * i32::try_from(n).unwrap_or(i32::MAX)
    }

    fn make_next(&mut self) {
        let rng = &mut self.rng;
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let org = format!("{}", 10_000 + rng.random_range(0..20));
        let account = format!("{}", 50_000 + rng.random_range(0..20));
        let inventory_id = uuid::Uuid::new_v4().to_string();
        let system_id = uuid::Uuid::new_v4().to_string();
        let mut date = self.first + self.spacing * i32::try_from(self.made).unwrap_or(i32::MAX);
        let now = Utc::now();
        for s in journey(rng) {
            date += chrono::Duration::milliseconds(s.after_ms);
            let at = date.min(now);
            let status = status_message(
                &request_id,
                (&account, &org),
                (&inventory_id, &system_id),
                &s,
                at,
            );
            // A PayloadStatus of plain strings always serializes.
            let value = serde_json::to_vec(&status).unwrap_or_default();
            self.seq += 1;
            self.waiting.push(std::cmp::Reverse((
                date,
                self.seq,
                WaitingStatus {
                    request_id: request_id.clone(),
                    value,
                },
            )));
        }
        self.request_ids.push(request_id);
        self.made += 1;
    }
}

impl Iterator for Journeys {
    type Item = MockStatus;

    fn next(&mut self) -> Option<MockStatus> {
        // A journey's first status is at its start, so nothing made later can come before the
        // earliest waiting status once the next journey starts after it.
        while self.made < self.payloads
            && self
                .waiting
                .peek()
                .is_none_or(|std::cmp::Reverse((date, _, _))| *date >= self.start_of(self.made))
        {
            self.make_next();
        }
        let std::cmp::Reverse((_, _, s)) = self.waiting.pop()?;
        Some(MockStatus {
            request_id: s.request_id,
            value: s.value,
        })
    }
}

/// Publishes `payloads` journeys on the payload-status topic at about `rate_per_sec` statuses per
/// second (0 or less: as fast as the bus takes them). Journeys interleave, as real traffic does.
pub async fn mock(
    bus: Arc<dyn Bus>,
    bus_config: &BusConfig,
    payloads: usize,
    rate_per_sec: f64,
) -> Result<MockReport, TrackerError> {
    if !rate_per_sec.is_finite() {
        return Err(TrackerError::Mock(format!(
            "rate {rate_per_sec} is not a number"
        )));
    }
    let topic = bus_config.topic(&bus_config.topics.payload_status);
    let started = Instant::now();
    let mut report = MockReport {
        payloads,
        ..MockReport::default()
    };
    let mut journeys = Journeys::new(
        payloads,
        Utc::now() - chrono::Duration::seconds(60),
        Duration::from_millis(37),
    );
    let gap = (rate_per_sec > 0.0).then(|| Duration::from_secs_f64(1.0 / rate_per_sec));
    let mut next = tokio::time::Instant::now();
    for status in journeys.by_ref() {
        if let Some(gap) = gap {
            tokio::time::sleep_until(next).await;
            next += gap;
        }
        bus.publish(
            OutgoingMessage::new(topic.clone(), status.value).key(status.request_id.into_bytes()),
        )
        .await?;
        report.statuses += 1;
    }
    report.request_ids = journeys.request_ids;
    report.elapsed = started.elapsed();
    Ok(report)
}
