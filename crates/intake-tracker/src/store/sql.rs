//! The SQL both drivers run: list queries built from the API's filters, with `$n` placeholders
//! (PostgreSQL's form, which SQLite also reads) and the values to bind in order.

use chrono::{DateTime, Utc};

use crate::model::{
    CountMode, PageAt, PayloadQuery, PayloadSort, Scope, SortDir, SortValue, StatusQuery,
    StatusSort, TimeRange,
};

/// A value to bind. Each driver binds times in its own column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// A statement under construction: SQL text plus its arguments.
#[derive(Debug, Default, Clone)]
pub struct Built {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Built {
    /// Adds an argument and returns its placeholder.
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }
}

/// The payload columns every payload query selects, in [`PayloadRow`](crate::model::PayloadRow) order.
pub const PAYLOAD_COLUMNS: &str =
    "p.id, p.request_id, p.account, p.org_id, p.inventory_id, p.system_id, p.created_at, p.last_status_at, p.last_service, p.last_status";

/// The status columns every status query selects, in [`StatusRow`](crate::model::StatusRow) order.
pub const STATUS_COLUMNS: &str =
    "s.id, s.payload_id, p.request_id, p.account, p.org_id, p.inventory_id, p.system_id, \
     s.service, s.source, s.status, s.status_msg, s.date, s.created_at";

/// A list query: the page statement (one row more than the page, to know whether more follow) and
/// the count statement.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub page: Built,
    pub count: Built,
    /// Whether `count` estimates instead of counting (see [`crate::model::CountMode`]).
    pub count_is_estimate: bool,
    /// Whether the sort column is a time (for reading the cursor value back).
    pub sort_is_time: bool,
}

fn scope_condition(scope: &Scope, b: &mut Built, conds: &mut Vec<String>) {
    match scope {
        Scope::All => {}
        Scope::Org(org) => {
            let p = b.arg(Arg::Text(org.clone()));
            conds.push(format!("p.org_id = {p}"));
        }
        Scope::Nothing => conds.push("1 = 0".into()),
    }
}

fn equal(column: &str, value: &Option<String>, b: &mut Built, conds: &mut Vec<String>) {
    if let Some(v) = value {
        let p = b.arg(Arg::Text(v.clone()));
        conds.push(format!("{column} = {p}"));
    }
}

fn range(column: &str, r: &TimeRange, b: &mut Built, conds: &mut Vec<String>) {
    for (op, bound) in [("<", r.lt), ("<=", r.lte), (">", r.gt), (">=", r.gte)] {
        if let Some(t) = bound {
            let p = b.arg(Arg::Time(t));
            conds.push(format!("{column} {op} {p}"));
        }
    }
}

/// Finishes a list query: conditions into both statements, keyset or offset, order and limit.
fn finish(
    select: &str,
    count_select: &str,
    filters: (Built, Vec<String>),
    (sort_column, id_column, dir): (&str, &str, SortDir),
    page_size: u32,
    at: &PageAt,
) -> (Built, Built) {
    let (mut b, mut conds) = filters;
    let count_where = where_clause(&conds);
    let count = Built {
        sql: format!("{count_select}{count_where}"),
        args: b.args.clone(),
    };
    let (cmp, order) = match dir {
        SortDir::Asc => (">", "ASC"),
        SortDir::Desc => ("<", "DESC"),
    };
    let mut offset = 0;
    match at {
        PageAt::Offset(n) => offset = *n,
        PageAt::After(keyset) => {
            let v = b.arg(match &keyset.value {
                SortValue::Text(t) => Arg::Text(t.clone()),
                SortValue::Time(t) => Arg::Time(*t),
            });
            let i = b.arg(Arg::Int(keyset.id));
            conds.push(format!(
                "({sort_column} {cmp} {v} OR ({sort_column} = {v} AND {id_column} {cmp} {i}))"
            ));
        }
    }
    let limit = b.arg(Arg::Int(i64::from(page_size) + 1));
    let off = b.arg(Arg::Int(i64::try_from(offset).unwrap_or(i64::MAX)));
    b.sql = format!(
        "{select}{} ORDER BY {sort_column} {order}, {id_column} {order} LIMIT {limit} OFFSET {off}",
        where_clause(&conds)
    );
    (b, count)
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// `GET /payloads`.
pub fn payloads(q: &PayloadQuery) -> ListQuery {
    let mut b = Built::default();
    let mut conds = Vec::new();
    scope_condition(&q.scope, &mut b, &mut conds);
    equal("p.account", &q.account, &mut b, &mut conds);
    equal("p.org_id", &q.org_id, &mut b, &mut conds);
    equal("p.inventory_id", &q.inventory_id, &mut b, &mut conds);
    equal("p.system_id", &q.system_id, &mut b, &mut conds);
    if q.service.is_some() || q.status.is_some() {
        let mut inner = Vec::new();
        equal("s.service", &q.service, &mut b, &mut inner);
        equal("s.status", &q.status, &mut b, &mut inner);
        conds.push(format!(
            "EXISTS (SELECT 1 FROM payload_statuses s WHERE s.payload_id = p.id AND {})",
            inner.join(" AND ")
        ));
    }
    range("p.created_at", &q.created_at, &mut b, &mut conds);
    let count_is_estimate = q.count == CountMode::Estimate && conds.is_empty();
    let (column, is_time) = payload_sort_column(q.sort_by);
    let (page, mut count) = finish(
        &format!("SELECT {PAYLOAD_COLUMNS} FROM payloads p"),
        "SELECT COUNT(*) FROM payloads p",
        (b, conds),
        (column, "p.id", q.sort_dir),
        q.page_size,
        &q.at,
    );
    if count_is_estimate {
        // Two probes of the primary key instead of a walk of a whole index. Each aggregate in its
        // own subquery: SQLite reads a lone MIN or MAX off the index, but scans the whole table
        // for a query holding both.
        count.sql = "SELECT COALESCE((SELECT MAX(id) FROM payloads) - (SELECT MIN(id) FROM payloads) + 1, 0)".into();
    }
    ListQuery {
        page,
        count,
        count_is_estimate,
        sort_is_time: is_time,
    }
}

/// The column a payload sort uses, and whether it is a time.
pub fn payload_sort_column(sort: PayloadSort) -> (&'static str, bool) {
    match sort {
        PayloadSort::Account => ("p.account", false),
        PayloadSort::OrgId => ("p.org_id", false),
        PayloadSort::InventoryId => ("p.inventory_id", false),
        PayloadSort::SystemId => ("p.system_id", false),
        PayloadSort::CreatedAt => ("p.created_at", true),
    }
}

/// The column a status sort uses, and whether it is a time.
pub fn status_sort_column(sort: StatusSort) -> (&'static str, bool) {
    match sort {
        StatusSort::Service => ("s.service", false),
        StatusSort::Source => ("COALESCE(s.source, '')", false),
        StatusSort::RequestId => ("p.request_id", false),
        StatusSort::Status => ("s.status", false),
        StatusSort::StatusMsg => ("s.status_msg", false),
        StatusSort::Date => ("s.date", true),
        StatusSort::CreatedAt => ("s.created_at", true),
    }
}

/// `GET /statuses`.
pub fn statuses(q: &StatusQuery) -> ListQuery {
    let mut b = Built::default();
    let mut conds = Vec::new();
    scope_condition(&q.scope, &mut b, &mut conds);
    equal("s.service", &q.service, &mut b, &mut conds);
    equal("s.source", &q.source, &mut b, &mut conds);
    equal("s.status", &q.status, &mut b, &mut conds);
    equal("s.status_msg", &q.status_msg, &mut b, &mut conds);
    equal("p.request_id", &q.request_id, &mut b, &mut conds);
    range("s.date", &q.date, &mut b, &mut conds);
    range("s.created_at", &q.created_at, &mut b, &mut conds);
    let count_is_estimate = q.count == CountMode::Estimate && conds.is_empty();
    let (column, is_time) = status_sort_column(q.sort_by);
    let from = "FROM payload_statuses s JOIN payloads p ON p.id = s.payload_id";
    let (page, mut count) = finish(
        &format!("SELECT {STATUS_COLUMNS} {from}"),
        &format!("SELECT COUNT(*) {from}"),
        (b, conds),
        (column, "s.id", q.sort_dir),
        q.page_size,
        &q.at,
    );
    if count_is_estimate {
        // As for payloads: every status has its payload, so the join counts the statuses, whose id
        // range two probes of the primary key give (on PostgreSQL, of each day partition's).
        count.sql = "SELECT COALESCE((SELECT MAX(id) FROM payload_statuses) - (SELECT MIN(id) FROM payload_statuses) + 1, 0)".into();
    }
    ListQuery {
        page,
        count,
        count_is_estimate,
        sort_is_time: is_time,
    }
}

/// `GET /stats`: status counts per service and status, then one journey row per service and payload.
pub fn stats(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    service: Option<&str>,
    scope: &Scope,
) -> (Built, Built) {
    let mut b = Built::default();
    let mut conds = Vec::new();
    scope_condition(scope, &mut b, &mut conds);
    let f = b.arg(Arg::Time(from));
    let t = b.arg(Arg::Time(to));
    conds.push(format!("s.date >= {f} AND s.date < {t}"));
    equal("s.service", &service.map(str::to_owned), &mut b, &mut conds);
    let from_clause = "FROM payload_statuses s JOIN payloads p ON p.id = s.payload_id";
    let w = where_clause(&conds);
    let counts = Built {
        sql: format!(
            "SELECT s.service, s.status, COUNT(*) {from_clause}{w} GROUP BY s.service, s.status"
        ),
        args: b.args.clone(),
    };
    let journeys = Built {
        sql: format!(
            "SELECT s.service, s.payload_id, MIN(s.date), \
             MIN(CASE WHEN s.status IN ('success', 'error', 'rejected') THEN s.date END), \
             MIN(CASE WHEN s.status = 'success' THEN s.date END) \
             {from_clause}{w} GROUP BY s.service, s.payload_id"
        ),
        args: b.args,
    };
    (counts, journeys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Keyset;

    #[test]
    fn keyset_page_binds_in_order() {
        let q = PayloadQuery {
            scope: Scope::Org("1".into()),
            account: Some("a".into()),
            org_id: None,
            inventory_id: None,
            system_id: None,
            service: Some("ingress".into()),
            status: Some("success".into()),
            created_at: TimeRange::default(),
            sort_by: PayloadSort::Account,
            sort_dir: SortDir::Asc,
            page_size: 10,
            at: PageAt::After(Keyset {
                value: SortValue::Text("a".into()),
                id: 7,
            }),
            count: CountMode::Exact,
        };
        let built = payloads(&q);
        assert!(
            built
                .page
                .sql
                .contains("(p.account > $5 OR (p.account = $5 AND p.id > $6))"),
            "{}",
            built.page.sql
        );
        assert!(built
            .page
            .sql
            .ends_with("ORDER BY p.account ASC, p.id ASC LIMIT $7 OFFSET $8"));
        assert_eq!(built.count.args.len(), 4);
        assert_eq!(built.page.args.len(), 8);
    }
}
