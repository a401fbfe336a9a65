//! The tracker's domain values: a checked status ready to store, the rows the API shows, and the
//! queries the store answers.

use chrono::{DateTime, Utc};

/// Who may see what: the tenant filter every read applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every org (an `Associate`, or identity not required).
    All,
    /// Only payloads whose `org_id` is this one.
    Org(String),
    /// Nothing (an identity without an org id).
    Nothing,
}

/// A status that passed every check, normalised, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStatus {
    pub request_id: String,
    pub service: String,
    /// `None` when absent or empty.
    pub source: Option<String>,
    pub status: String,
    /// `""` when absent; at most 4096 characters.
    pub status_msg: String,
    /// Truncated to microseconds.
    pub date: DateTime<Utc>,
    /// `""` when absent.
    pub account: String,
    pub org_id: String,
    pub inventory_id: String,
    pub system_id: String,
    /// sha256 hex of the normalised identifying fields (spec/tracker.md "Dedup").
    pub dedup_key: String,
}

/// A payload row, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRow {
    pub id: i64,
    pub request_id: String,
    pub account: String,
    pub org_id: String,
    pub inventory_id: String,
    pub system_id: String,
    pub created_at: DateTime<Utc>,
    pub last_status_at: DateTime<Utc>,
    pub last_service: String,
    pub last_status: String,
}

/// A status row with its payload's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub id: i64,
    pub payload_id: i64,
    pub request_id: String,
    pub account: String,
    pub org_id: String,
    pub inventory_id: String,
    pub system_id: String,
    pub service: String,
    /// `None` when the status had no source.
    pub source: Option<String>,
    pub status: String,
    pub status_msg: String,
    pub date: DateTime<Utc>,
    /// When the tracker stored it.
    pub created_at: DateTime<Utc>,
}

/// A tenant field of a payload whose later value differed from the first one (ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConflict {
    pub request_id: String,
    /// `account`, `org_id`, `inventory_id` or `system_id`.
    pub field: &'static str,
    pub kept: String,
    pub ignored: String,
}

/// What storing one batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// The positions in the batch of the statuses newly stored, in batch order.
    pub stored: Vec<usize>,
    /// Statuses whose dedup key was already known.
    pub duplicates: usize,
    pub conflicts: Vec<IdentityConflict>,
    /// `(service, seconds)` for each service whose first terminal status this batch stored.
    pub service_durations: Vec<(String, f64)>,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// A value of the sort column, as a cursor remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    Text(String),
    Time(DateTime<Utc>),
}

/// Where a page starts: after the row with this sort value and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    pub value: SortValue,
    pub id: i64,
}

/// Offset or keyset paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageAt {
    Offset(u64),
    After(Keyset),
}

/// One page of rows, the total, and the position of the last row when more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub count: i64,
    /// Whether `count` is exact; `false` only for an estimate a [`CountMode::Estimate`] allowed.
    pub count_exact: bool,
    pub rows: Vec<T>,
    pub next: Option<Keyset>,
}

/// How `/payloads` and `/statuses` count the rows that match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CountMode {
    /// The exact number (the spec's `count`): a full index count when nothing filters.
    #[default]
    Exact,
    /// An unfiltered, unscoped list may count from the id range instead (`MAX(id) − MIN(id) + 1`,
    /// two index probes): the payloads deleted in between by retention or not yet committed make
    /// it an upper bound. A filtered or tenant-scoped list is still counted exactly.
    Estimate,
}

/// A time range on one column; every bound optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub lt: Option<DateTime<Utc>>,
    pub lte: Option<DateTime<Utc>>,
    pub gt: Option<DateTime<Utc>>,
    pub gte: Option<DateTime<Utc>>,
}

/// Columns `/payloads` sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadSort {
    Account,
    OrgId,
    InventoryId,
    SystemId,
    CreatedAt,
}

/// `GET /payloads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadQuery {
    pub scope: Scope,
    pub account: Option<String>,
    pub org_id: Option<String>,
    pub inventory_id: Option<String>,
    pub system_id: Option<String>,
    pub service: Option<String>,
    pub status: Option<String>,
    pub created_at: TimeRange,
    pub sort_by: PayloadSort,
    pub sort_dir: SortDir,
    pub page_size: u32,
    pub at: PageAt,
    pub count: CountMode,
}

/// Columns `/statuses` sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSort {
    Service,
    Source,
    RequestId,
    Status,
    StatusMsg,
    Date,
    CreatedAt,
}

/// `GET /statuses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    pub scope: Scope,
    pub service: Option<String>,
    pub source: Option<String>,
    pub status: Option<String>,
    pub status_msg: Option<String>,
    pub request_id: Option<String>,
    pub date: TimeRange,
    pub created_at: TimeRange,
    pub sort_by: StatusSort,
    pub sort_dir: SortDir,
    pub page_size: u32,
    pub at: PageAt,
    pub count: CountMode,
}

/// One service's journey on one payload inside a stats window.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceJourney {
    pub service: String,
    pub payload_id: i64,
    pub first: DateTime<Utc>,
    /// The first terminal status (`success`, `error`, `rejected`), if any.
    pub first_terminal: Option<DateTime<Utc>>,
    /// Whether that first terminal status was `success`.
    pub succeeded: bool,
}

/// Raw numbers behind `GET /stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsData {
    /// `(service, status, count)`.
    pub status_counts: Vec<(String, String, i64)>,
    pub journeys: Vec<ServiceJourney>,
}

/// What a retention run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub statuses_deleted: u64,
    pub payloads_deleted: u64,
    /// PostgreSQL: the day partitions dropped.
    pub partitions_dropped: Vec<String>,
}
