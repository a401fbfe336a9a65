//! The common status message checked without building a `serde_json::Value`: its fields read as
//! borrowed text straight from the message, its date in the form intake's own producers write
//! (`2024-05-02T09:30:12.123456Z`) read without chrono's general parser. It answers only for a
//! message that passes every check, and only where its answer is the one [`super::check_value`]
//! gives; anything else (a rejection, a number where text is expected, a repeated field, another
//! date form) it leaves to that, which then decides exactly as it always did. A status message is
//! decoded once per status at ingest, so the `Value` (an ordered map, a `String` per key and
//! value) and chrono's general parser were most of the ingest's own CPU per status.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{
    dedup_key, normalise_name, parse_date, valid_request_id, DateWindow, MAX_ID, MAX_NAME,
    MAX_STATUS_MSG,
};
use crate::model::NewStatus;

/// The fields the checks read, in this order.
const FIELDS: [&str; 10] = [
    "service",
    "source",
    "request_id",
    "status",
    "status_msg",
    "date",
    "account",
    "org_id",
    "inventory_id",
    "system_id",
];
const SERVICE: usize = 0;
const REQUEST_ID: usize = 2;
const STATUS: usize = 3;
const DATE: usize = 5;
/// The tenant fields (a number is accepted there, as its decimal text) start here.
const FIRST_TENANT: usize = 6;

/// One field's value as the message holds it.
#[derive(Debug, Default)]
enum Field<'a> {
    #[default]
    Absent,
    Null,
    Text(Cow<'a, str>),
    /// An integer, as its decimal text (what `serde_json::Number` displays).
    Integer(String),
}

impl Field<'_> {
    /// The field as text (see `super::text`): `""` when absent or null.
    fn text(&self) -> &str {
        match self {
            Field::Absent | Field::Null => "",
            Field::Text(t) => t,
            Field::Integer(n) => n,
        }
    }
}

/// The message's fields, or an error whenever the fast path does not answer.
struct Fields<'a>([Field<'a>; 10]);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a status message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: [Field<'de>; 10] = Default::default();
        let mut seen = [false; 10];
        while let Some(key) = map.next_key::<Key>()? {
            match key.0 {
                Some(i) => {
                    // A repeated field: the `Value` keeps the last one; leave it to that path.
                    if std::mem::replace(&mut seen[i], true) {
                        return Err(de::Error::custom("repeated field"));
                    }
                    fields[i] = map.next_value::<FieldValue>()?.0;
                }
                // Parsed as the `Value` path parses it, so that what it refuses is refused here too.
                None => {
                    map.next_value::<Value>()?;
                }
            }
        }
        Ok(Fields(fields))
    }
}

/// A key: the index of a field the checks read, or `None` for any other.
struct Key(Option<usize>);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(Key(FIELDS.iter().position(|f| *f == name)))
    }
}

/// A field's value: text (borrowed when it holds no escape), null or an integer; anything else is
/// an error, which leaves the message to the `Value` path.
struct FieldValue<'a>(Field<'a>);

impl<'de> serde::Deserialize<'de> for FieldValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor)
    }
}

struct FieldValueVisitor;

impl<'de> Visitor<'de> for FieldValueVisitor {
    type Value = FieldValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, null or an integer")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(FieldValue(Field::Text(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldValue(Field::Text(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(FieldValue(Field::Text(Cow::Owned(v))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(FieldValue(Field::Null))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(FieldValue(Field::Integer(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(FieldValue(Field::Integer(v.to_string())))
    }
}

/// The checked status when `value` passes every check and the fast path can tell; `None` leaves
/// the message to [`super::check_value`] (see the module documentation).
pub(super) fn check(value: &[u8], window: DateWindow) -> Option<NewStatus> {
    let Fields(fields) = serde_json::from_slice(value).ok()?;
    // Present: the required fields; text: every field but the tenant ones.
    for (i, field) in fields.iter().enumerate() {
        let required = matches!(i, SERVICE | REQUEST_ID | STATUS | DATE);
        match field {
            Field::Absent | Field::Null if required => return None,
            Field::Text(t) if required && t.trim().is_empty() => return None,
            Field::Integer(_) if i < FIRST_TENANT => return None,
            _ => {}
        }
    }
    let [service, source, request_id, status, status_msg, date, account, org_id, inventory_id, system_id] =
        fields;
    if !valid_request_id(request_id.text()) {
        return None;
    }
    let date_text = date.text();
    let date = parse_common_date(date_text).or_else(|| parse_date(date_text))?;
    if date < window.earliest || date > window.latest {
        return None;
    }
    let longer = |field: &Field, max: usize| {
        let text = field.text();
        text.len() > max && text.chars().count() > max
    };
    if [&service, &source, &status]
        .iter()
        .any(|f| longer(f, MAX_NAME))
        || [&account, &org_id, &inventory_id, &system_id]
            .iter()
            .any(|f| longer(f, MAX_ID))
    {
        return None;
    }
    let service = normalise_name(service.text());
    let status = normalise_name(status.text());
    let source = Some(normalise_name(source.text())).filter(|s| !s.is_empty());
    let status_msg = truncate_chars(status_msg.text(), MAX_STATUS_MSG).to_owned();
    let request_id = owned(request_id);
    let dedup_key = dedup_key(
        &request_id,
        &service,
        source.as_deref(),
        &status,
        &status_msg,
        date,
    );
    Some(NewStatus {
        request_id,
        service,
        source,
        status,
        status_msg,
        date,
        account: owned(account),
        org_id: owned(org_id),
        inventory_id: owned(inventory_id),
        system_id: owned(system_id),
        dedup_key,
    })
}

fn owned(field: Field<'_>) -> String {
    match field {
        Field::Absent | Field::Null => String::new(),
        Field::Text(t) => t.into_owned(),
        Field::Integer(n) => n,
    }
}

/// The first `max` characters of `text`.
fn truncate_chars(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, truncated to microseconds: the form intake writes, which
/// [`parse_date`] reads as the same instant. `None` for anything else, [`parse_date`]'s to decide.
pub(super) fn parse_common_date(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let digits = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let fraction = &b[19..b.len() - 1];
    let micros = match fraction {
        [] => 0,
        [b'.', f @ ..] if (1..=9).contains(&f.len()) => {
            let mut micros = 0;
            for i in 0..6 {
                let c = f.get(i).copied().unwrap_or(b'0');
                if !c.is_ascii_digit() {
                    return None;
                }
                micros = micros * 10 + u32::from(c - b'0');
            }
            if !f.iter().all(u8::is_ascii_digit) {
                return None;
            }
            micros
        }
        _ => return None,
    };
    let year = i32::try_from(digits(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, digits(5, 7)?, digits(8, 10)?)?;
    let time = date.and_hms_micro_opt(digits(11, 13)?, digits(14, 16)?, digits(17, 19)?, micros)?;
    Some(time.and_utc())
}
