//! Binlog values to dts [`Value`]s, faithfully for every column type.
//!
//! mysql_common hands DECIMAL, TIMESTAMP, YEAR, BIT and SET as bytes, ENUM
//! as its 1-based index, DATETIME/TIME as tuples; this module turns each
//! into the same text a `SELECT` would show, so snapshot rows and streamed
//! rows render identically.

use dts_core::event::Value;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::Value as My;
use mysql_common::binlog::jsonb::{JsonDom, JsonNumber, JsonScalar, ObjectKey, Value as JsonbValue};
use mysql_common::constants::ColumnType;

use crate::schema::{ColumnInfo, ColumnKind};

/// Why a value could not be decoded: the task fails rather than write a
/// wrong value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {reason}")]
pub struct DecodeError {
    pub column: String,
    pub reason: String,
}

/// Where a value was read: the binlog sends raw storage formats, a query
/// (the snapshot) sends text in the connection's UTF-8, SET as labels and
/// TIMESTAMP as a date in the session time zone (which dts sets to UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Binlog,
    Query,
}

/// A binlog row value.
pub fn decode(value: Option<&BinlogValue<'_>>, col: &ColumnInfo) -> Result<Value, DecodeError> {
    let err = |reason: String| DecodeError { column: col.name.clone(), reason };
    let Some(value) = value else { return Ok(Value::Null) };
    match value {
        BinlogValue::Value(v) => decode_plain(v, col, Origin::Binlog).map_err(err),
        BinlogValue::Jsonb(j) => jsonb(j.clone()).map(Value::Json).map_err(err),
        BinlogValue::JsonDiff(_) => {
            Err(err("partial JSON updates are not supported: set binlog_row_value_options='' on the source".into()))
        }
    }
}

/// MySQL refuses JSON documents nested deeper than this; deeper binary JSON
/// is corrupt, and walking it would only use up the stack.
const JSON_MAX_DEPTH: usize = 100;

/// MySQL's binary JSON as the server's JSON text reads (which is how the
/// snapshot sees it): DECIMAL opaque values are numbers, DATE, TIME and
/// DATETIME ones strings such as `"2026-11-22 10:00:00.000000"`.
fn jsonb(v: JsonbValue<'_>) -> Result<serde_json::Value, String> {
    json_of(v, 0).map_err(|e| format!("unreadable binary JSON: {e}"))
}

/// Walks the containers here rather than in `JsonbValue::parse`, to check
/// what mysql_common takes on trust: the depth, and a DECIMAL's precision
/// and scale (a scale above the precision overflows its size arithmetic).
fn json_of(v: JsonbValue<'_>, depth: usize) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    if depth > JSON_MAX_DEPTH {
        return Err(format!("nested deeper than {JSON_MAX_DEPTH} levels"));
    }
    let io = |e: std::io::Error| e.to_string();
    let item = |e: std::io::Result<JsonbValue<'_>>| e.map_err(io).and_then(|e| json_of(e, depth + 1));
    let field = |kv: std::io::Result<(ObjectKey<'_>, JsonbValue<'_>)>| {
        let (k, v) = kv.map_err(io)?;
        Ok::<_, String>((k.value().into_owned(), json_of(v, depth + 1)?))
    };
    Ok(match v {
        JsonbValue::SmallArray(a) => J::Array(a.iter().map(item).collect::<Result<_, _>>()?),
        JsonbValue::LargeArray(a) => J::Array(a.iter().map(item).collect::<Result<_, _>>()?),
        JsonbValue::SmallObject(o) => J::Object(o.iter().map(field).collect::<Result<_, _>>()?),
        JsonbValue::LargeObject(o) => J::Object(o.iter().map(field).collect::<Result<_, _>>()?),
        JsonbValue::Opaque(o) if o.value_type() == ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            check_decimal(o.data_raw())?;
            scalar(JsonbValue::Opaque(o).parse().map_err(io)?)
        }
        other => scalar(other.parse().map_err(io)?),
    })
}

/// A packed DECIMAL starts with its precision and scale; MySQL allows
/// DECIMAL(65,30) at most.
fn check_decimal(data: &[u8]) -> Result<(), String> {
    match data {
        [precision, scale, ..] if (1..=65).contains(precision) && *scale <= 30 && scale <= precision => Ok(()),
        [precision, scale, ..] => Err(format!("a DECIMAL with precision {precision} and scale {scale}")),
        _ => Err("a DECIMAL without its precision and scale".into()),
    }
}

/// A DECIMAL column's table map entry, `[precision, scale]`. mysql_common
/// sizes every value of the column from it unchecked (`precision - scale`
/// wraps), so a corrupt entry is refused before any row is read. MariaDB
/// allows a scale of 38, MySQL 30.
pub(crate) fn check_decimal_column(meta: &[u8]) -> Result<(), String> {
    match meta {
        [precision, scale, ..] if (1..=65).contains(precision) && *scale <= 38 && scale <= precision => Ok(()),
        [precision, scale, ..] => Err(format!("a DECIMAL column with precision {precision} and scale {scale}")),
        _ => Err("a DECIMAL column without its precision and scale".into()),
    }
}

fn scalar(dom: JsonDom) -> serde_json::Value {
    match dom {
        JsonDom::Scalar(JsonScalar::Number(JsonNumber::Decimal(d))) => {
            let text = d.to_string();
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        }
        JsonDom::Scalar(scalar) => scalar.into(),
        JsonDom::Container(container) => container.into(),
    }
}

/// A value of a query result row (the snapshot).
pub fn decode_query(value: &My, col: &ColumnInfo) -> Result<Value, DecodeError> {
    decode_plain(value, col, Origin::Query).map_err(|reason| DecodeError { column: col.name.clone(), reason })
}

fn decode_plain(v: &My, col: &ColumnInfo, origin: Origin) -> Result<Value, String> {
    Ok(match (v, col.kind) {
        (My::NULL, _) => Value::Null,
        (My::Int(i), ColumnKind::Enum) => enum_label(*i, col),
        // The column's declared signedness decides, whatever the table map's
        // signedness bits said: re-reading the integer by width is the same
        // for values that were already right.
        (My::Int(i), ColumnKind::Int(bytes)) if col.unsigned => Value::UInt(unsigned(*i, bytes)),
        (My::Int(i), ColumnKind::Int(bytes)) => Value::Int(signed(*i, bytes)),
        (My::UInt(u), ColumnKind::Int(_)) if !col.unsigned => Value::Int(*u as i64),
        (My::Int(i), ColumnKind::Timestamp) => Value::Temporal(timestamp_text(*i, 0, col.fsp)?),
        (My::Int(i), ColumnKind::Year) => Value::UInt(u64::try_from(*i).unwrap_or(0)),
        (My::Int(i), _) => Value::Int(*i),
        (My::UInt(u), _) => Value::UInt(*u),
        // FLOAT is single precision: print it as such, then widen, so 1.1
        // stays 1.1 rather than 1.100000023841858.
        (My::Float(f), _) => Value::Float(f.to_string().parse().unwrap_or(f64::from(*f))),
        (My::Double(d), _) => Value::Float(*d),
        (My::Date(y, m, d, h, mi, s, us), kind) => Value::Temporal(match kind {
            ColumnKind::Date => format!("{y:04}-{m:02}-{d:02}"),
            // A query's TIMESTAMP, already in UTC (the session time zone).
            ColumnKind::Timestamp if (*y, *m, *d) == (0, 0, 0) => {
                format!("0000-00-00T00:00:00{}Z", fraction(0, col.fsp))
            }
            ColumnKind::Timestamp => {
                format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}Z", fraction(*us, col.fsp))
            }
            _ => format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}{}", fraction(*us, col.fsp)),
        }),
        (My::Time(neg, days, h, m, s, us), _) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let sign = if *neg { "-" } else { "" };
            Value::Temporal(format!("{sign}{hours:02}:{m:02}:{s:02}{}", fraction(*us, col.fsp)))
        }
        (My::Bytes(b), kind) => decode_bytes(b, kind, col, origin)?,
    })
}

fn decode_bytes(b: &[u8], kind: ColumnKind, col: &ColumnInfo, origin: Origin) -> Result<Value, String> {
    let text = || String::from_utf8(b.to_vec()).map_err(|e| format!("not UTF-8: {e}"));
    // The binlog keeps the column's own charset; a query converts to UTF-8.
    let charset = match origin {
        Origin::Binlog => col.charset.as_deref(),
        Origin::Query => Some("utf8mb4"),
    };
    match (origin, kind) {
        (Origin::Query, ColumnKind::Set) => return Ok(Value::Text(text()?)),
        (Origin::Query, ColumnKind::Uuid) if b.len() == 36 => return Ok(Value::Text(text()?)),
        _ => {}
    }
    Ok(match kind {
        ColumnKind::Decimal => Value::Decimal(text()?),
        ColumnKind::Timestamp => {
            let t = text()?;
            let (secs, frac) = t.split_once('.').unwrap_or((&t, "0"));
            let secs: i64 = secs.parse().map_err(|_| format!("bad TIMESTAMP {t:?}"))?;
            let micros: u32 = format!("{frac:0<6}")[..6].parse().map_err(|_| format!("bad TIMESTAMP {t:?}"))?;
            Value::Temporal(timestamp_text(secs, micros, col.fsp)?)
        }
        ColumnKind::Year => Value::UInt(text()?.parse().map_err(|_| "bad YEAR".to_owned())?),
        ColumnKind::Bit => Value::UInt(b.iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))),
        ColumnKind::Set => {
            let mask = b.iter().rev().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            let labels: Vec<&str> = col
                .labels
                .iter()
                .enumerate()
                .filter(|(i, _)| *i < 64 && mask & (1 << i) != 0)
                .map(|(_, l)| l.as_str())
                .collect();
            Value::Text(labels.join(","))
        }
        ColumnKind::Text | ColumnKind::Enum | ColumnKind::Other => Value::Text(crate::charset::decode(b, charset)),
        ColumnKind::Json => {
            let t = crate::charset::decode(b, charset);
            match serde_json::from_str(&t) {
                Ok(j) => Value::Json(j),
                Err(_) => Value::Text(t),
            }
        }
        ColumnKind::Uuid => Value::Text(uuid_text(b)),
        ColumnKind::Geometry => {
            if b.len() < 4 {
                return Err("GEOMETRY value shorter than its SRID".into());
            }
            let srid = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            Value::Geometry { srid, wkb: b[4..].to_vec() }
        }
        ColumnKind::Binary
        | ColumnKind::Int(_)
        | ColumnKind::Float
        | ColumnKind::Double
        | ColumnKind::Date
        | ColumnKind::Time
        | ColumnKind::DateTime => Value::Bytes(b.to_vec()),
    })
}

fn unsigned(v: i64, bytes: u8) -> u64 {
    if bytes >= 8 {
        v as u64
    } else {
        (v as u64) & ((1u64 << (u32::from(bytes) * 8)) - 1)
    }
}

fn signed(v: i64, bytes: u8) -> i64 {
    if bytes >= 8 {
        v
    } else {
        let shift = 64 - u32::from(bytes) * 8;
        (v << shift) >> shift
    }
}

fn enum_label(index: i64, col: &ColumnInfo) -> Value {
    // Index 0 is MySQL's "invalid value" entry: an empty string.
    let label = usize::try_from(index).ok().and_then(|i| i.checked_sub(1)).and_then(|i| col.labels.get(i));
    Value::Text(label.cloned().unwrap_or_default())
}

/// `.ffffff` cut to the column's precision, as SELECT prints it.
fn fraction(micros: u32, fsp: u8) -> String {
    if fsp == 0 {
        return String::new();
    }
    let digits = format!("{micros:06}");
    format!(".{}", &digits[..usize::from(fsp.min(6))])
}

/// TIMESTAMP values are instants: render them in UTC, ISO-8601.
fn timestamp_text(secs: i64, micros: u32, fsp: u8) -> Result<String, String> {
    if secs == 0 && micros == 0 {
        // MySQL's zero timestamp, not 1970.
        return Ok(format!("0000-00-00T00:00:00{}Z", fraction(0, fsp)));
    }
    let t = chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| format!("TIMESTAMP {secs} out of range"))?;
    Ok(format!("{}{}Z", t.format("%Y-%m-%dT%H:%M:%S"), fraction(micros, fsp)))
}

/// MariaDB sends UUID values as 16 bytes with trailing zero bytes removed.
fn uuid_text(b: &[u8]) -> String {
    let mut bytes = [0u8; 16];
    for (d, s) in bytes.iter_mut().zip(b) {
        *d = *s;
    }
    let hex: String = bytes.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn col(kind: ColumnKind, unsigned: bool) -> ColumnInfo {
        ColumnInfo { name: "c".into(), kind, unsigned, charset: Some("utf8mb4".into()), labels: vec![], fsp: 0 }
    }

    /// Parses JSONB bytes as the binlog row parser would.
    fn from_jsonb(bytes: &[u8]) -> Result<Value, DecodeError> {
        use mysql_common::io::ParseBuf;
        use mysql_common::proto::MyDeserialize;
        let v = JsonbValue::deserialize((), &mut ParseBuf(bytes)).unwrap();
        decode(Some(&BinlogValue::Jsonb(v)), &col(ColumnKind::Json, false))
    }

    /// JSONB opaque value: type 0x0f, the MySQL field type, a length, data.
    fn opaque(field_type: u8, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0x0f, field_type, u8::try_from(data.len()).unwrap()];
        b.extend_from_slice(data);
        b
    }

    /// MySQL's packed DATETIME as JSONB stores it.
    fn packed_datetime(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, micros: i64) -> [u8; 8] {
        let ymd = ((y * 13 + mo) << 5) | d;
        let hms = (h << 12) | (mi << 6) | s;
        ((((ymd << 17) | hms) << 24) + micros).to_le_bytes()
    }

    #[test]
    fn binary_json_opaque_values_decode() {
        // DECIMAL(3,2) 1.50: precision, scale, then the binary decimal.
        assert_eq!(from_jsonb(&opaque(246, &[3, 2, 0x81, 0x32])).unwrap(), Value::Json(serde_json::json!(1.5)));
        let dt = packed_datetime(2026, 11, 22, 10, 5, 7, 250_000);
        assert_eq!(from_jsonb(&opaque(12, &dt)).unwrap(), Value::Json(serde_json::json!("2026-11-22 10:05:07.250000")));
        let date = packed_datetime(2026, 11, 22, 0, 0, 0, 0);
        assert_eq!(from_jsonb(&opaque(10, &date)).unwrap(), Value::Json(serde_json::json!("2026-11-22")));
        // An array holding the decimal inline: [1.50]
        // Type, then count, size and one entry (type, offset), offsets
        // counted from after the type byte.
        let value = &opaque(246, &[3, 2, 0x81, 0x32])[1..];
        let size = u8::try_from(7 + value.len()).unwrap();
        let mut arr = vec![0x02, 1, 0, size, 0, 0x0f, 7, 0];
        arr.extend_from_slice(value);
        assert_eq!(from_jsonb(&arr).unwrap(), Value::Json(serde_json::json!([1.5])));
        // Truncated data fails with a message, not a panic.
        assert!(from_jsonb(&opaque(12, &[1, 2])).is_err());
    }

    #[test]
    fn corrupt_binary_json_decimals_and_depths_are_errors() {
        // A scale above the precision (found by the property test below:
        // mysql_common's size arithmetic overflows on it).
        let err = from_jsonb(&opaque(246, &[1, 5, 0x80, 0, 0])).unwrap_err();
        assert!(err.reason.contains("precision 1 and scale 5"), "{err}");
        assert!(from_jsonb(&opaque(246, &[66, 0, 0x80])).is_err());
        assert!(from_jsonb(&opaque(246, &[3])).is_err());
        // Arrays nested one in another: type, count 1, size, one entry
        // (type 0x02, offset 7), then the inner array.
        let nested = |levels: usize| {
            let mut payload = vec![0, 0, 4, 0];
            for _ in 0..levels {
                let size = u16::try_from(7 + payload.len()).unwrap().to_le_bytes();
                payload.splice(0..0, [1, 0, size[0], size[1], 0x02, 7, 0]);
            }
            payload.insert(0, 0x02);
            payload
        };
        assert_eq!(from_jsonb(&nested(3)).unwrap(), Value::Json(serde_json::json!([[[[]]]])));
        assert!(from_jsonb(&nested(JSON_MAX_DEPTH)).is_ok());
        let err = from_jsonb(&nested(JSON_MAX_DEPTH + 1)).unwrap_err();
        assert!(err.reason.contains("nested deeper"), "{err}");
    }

    fn d(v: My, c: &ColumnInfo) -> Value {
        decode(Some(&BinlogValue::Value(v)), c).unwrap()
    }

    #[test]
    fn integers_of_every_width_and_sign() {
        assert_eq!(d(My::Int(-1), &col(ColumnKind::Int(1), true)), Value::UInt(255));
        assert_eq!(d(My::Int(-1), &col(ColumnKind::Int(3), true)), Value::UInt(16_777_215));
        assert_eq!(d(My::Int(-1), &col(ColumnKind::Int(8), true)), Value::UInt(u64::MAX));
        assert_eq!(d(My::UInt(u64::MAX), &col(ColumnKind::Int(8), true)), Value::UInt(u64::MAX));
        assert_eq!(d(My::Int(-128), &col(ColumnKind::Int(1), false)), Value::Int(-128));
        // Read as unsigned by mistake: the declared sign wins.
        assert_eq!(d(My::Int(8_388_608), &col(ColumnKind::Int(3), false)), Value::Int(-8_388_608));
        assert_eq!(d(My::Int(128), &col(ColumnKind::Int(1), false)), Value::Int(-128));
        assert_eq!(d(My::Int(127), &col(ColumnKind::Int(1), false)), Value::Int(127));
        assert_eq!(d(My::UInt(u64::MAX), &col(ColumnKind::Int(8), false)), Value::Int(-1));
        assert_eq!(d(My::Int(i64::MIN), &col(ColumnKind::Int(8), false)), Value::Int(i64::MIN));
        assert_eq!(decode(None, &col(ColumnKind::Int(4), false)).unwrap(), Value::Null);
    }

    #[test]
    fn temporal_values_render_like_select() {
        let mut c = col(ColumnKind::DateTime, false);
        c.fsp = 3;
        assert_eq!(
            d(My::Date(2024, 2, 29, 23, 59, 58, 123_456), &c),
            Value::Temporal("2024-02-29 23:59:58.123".into())
        );
        let date = col(ColumnKind::Date, false);
        assert_eq!(d(My::Date(2024, 1, 5, 0, 0, 0, 0), &date), Value::Temporal("2024-01-05".into()));
        let mut t = col(ColumnKind::Time, false);
        t.fsp = 6;
        assert_eq!(d(My::Time(true, 1, 10, 0, 1, 5), &t), Value::Temporal("-34:00:01.000005".into()));
        let mut ts = col(ColumnKind::Timestamp, false);
        ts.fsp = 6;
        assert_eq!(
            d(My::Bytes(b"1700000000.000042".to_vec()), &ts),
            Value::Temporal("2023-11-14T22:13:20.000042Z".into())
        );
        ts.fsp = 0;
        assert_eq!(d(My::Bytes(b"1700000000".to_vec()), &ts), Value::Temporal("2023-11-14T22:13:20Z".into()));
        assert_eq!(d(My::Bytes(b"2155".to_vec()), &col(ColumnKind::Year, false)), Value::UInt(2155));
    }

    #[test]
    fn query_values_render_like_binlog_values() {
        let mut latin = col(ColumnKind::Text, false);
        latin.charset = Some("latin1".into());
        let q = |v: My, c: &ColumnInfo| decode_query(&v, c).unwrap();
        assert_eq!(q(My::Bytes("café".as_bytes().to_vec()), &latin), Value::Text("café".into()), "sent as UTF-8");
        let mut s = col(ColumnKind::Set, false);
        s.labels = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(q(My::Bytes(b"a,c".to_vec()), &s), Value::Text("a,c".into()));
        let mut ts = col(ColumnKind::Timestamp, false);
        ts.fsp = 3;
        assert_eq!(q(My::Date(2024, 1, 2, 3, 4, 5, 678_000), &ts), Value::Temporal("2024-01-02T03:04:05.678Z".into()));
        let uuid = "123e4567-e89b-12d3-a456-426614174000";
        assert_eq!(q(My::Bytes(uuid.as_bytes().to_vec()), &col(ColumnKind::Uuid, false)), Value::Text(uuid.into()));
    }

    #[test]
    fn text_binary_and_labels() {
        assert_eq!(d(My::Bytes("😀".as_bytes().to_vec()), &col(ColumnKind::Text, false)), Value::Text("😀".into()));
        let mut latin = col(ColumnKind::Text, false);
        latin.charset = Some("latin1".into());
        assert_eq!(d(My::Bytes(vec![0x63, 0x61, 0x66, 0xe9, 0x80]), &latin), Value::Text("café€".into()));
        assert_eq!(d(My::Bytes(vec![0, 1, 255]), &col(ColumnKind::Binary, false)), Value::Bytes(vec![0, 1, 255]));
        assert_eq!(
            d(My::Bytes(b"-12.3400".to_vec()), &col(ColumnKind::Decimal, false)),
            Value::Decimal("-12.3400".into())
        );
        assert_eq!(d(My::Bytes(vec![0x01, 0x02]), &col(ColumnKind::Bit, false)), Value::UInt(258));
        let mut e = col(ColumnKind::Enum, false);
        e.labels = vec!["small".into(), "large".into()];
        assert_eq!(d(My::Int(2), &e), Value::Text("large".into()));
        assert_eq!(d(My::Int(0), &e), Value::Text(String::new()));
        let mut s = col(ColumnKind::Set, false);
        s.labels = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(d(My::Bytes(vec![0b101]), &s), Value::Text("a,c".into()));
        assert_eq!(d(My::Float(1.1), &col(ColumnKind::Float, false)), Value::Float(1.1));
        assert_eq!(
            d(My::Bytes(br#"{"a":[1,2]}"#.to_vec()), &col(ColumnKind::Json, false)),
            Value::Json(serde_json::json!({"a": [1, 2]}))
        );
        assert_eq!(
            d(My::Bytes(vec![0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11]), &col(ColumnKind::Uuid, false)),
            Value::Text("12345678-9abc-def0-1100-000000000000".into())
        );
        let g = d(My::Bytes(vec![0xe6, 0x10, 0, 0, 1, 2, 3]), &col(ColumnKind::Geometry, false));
        assert_eq!(g, Value::Geometry { srid: 4326, wkb: vec![1, 2, 3] });
    }

    fn any_kind() -> impl proptest::strategy::Strategy<Value = ColumnKind> {
        use proptest::prelude::*;
        prop_oneof![
            (1u8..=8).prop_map(ColumnKind::Int),
            Just(ColumnKind::Float),
            Just(ColumnKind::Double),
            Just(ColumnKind::Decimal),
            Just(ColumnKind::Date),
            Just(ColumnKind::Time),
            Just(ColumnKind::DateTime),
            Just(ColumnKind::Timestamp),
            Just(ColumnKind::Year),
            Just(ColumnKind::Text),
            Just(ColumnKind::Binary),
            Just(ColumnKind::Enum),
            Just(ColumnKind::Set),
            Just(ColumnKind::Bit),
            Just(ColumnKind::Json),
            Just(ColumnKind::Uuid),
            Just(ColumnKind::Geometry),
            Just(ColumnKind::Other),
        ]
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = mysql_common::value::Value> {
        use mysql_common::value::Value as My;
        use proptest::prelude::*;
        prop_oneof![
            Just(My::NULL),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(My::Bytes),
            any::<i64>().prop_map(My::Int),
            any::<u64>().prop_map(My::UInt),
            any::<f32>().prop_map(My::Float),
            any::<f64>().prop_map(My::Double),
            (any::<u16>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u32>())
                .prop_map(|(y, mo, d, h, mi, s, us)| My::Date(y, mo, d, h, mi, s, us)),
            (any::<bool>(), any::<u32>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u32>())
                .prop_map(|(neg, d, h, mi, s, us)| My::Time(neg, d, h, mi, s, us)),
        ]
    }

    /// Every table map entry a DECIMAL column can carry: those the check
    /// lets through are sized and read by mysql_common without a panic; the rest (scale above precision, no digits, more than
    /// any server allows) are refused.
    #[test]
    fn decimal_columns_the_check_passes_are_safe_to_read() {
        use mysql_common::binlog::decimal::{decimal_bin_size, Decimal};
        let mut passed = 0;
        for precision in 0..=u8::MAX {
            for scale in 0..=u8::MAX {
                if check_decimal_column(&[precision, scale]).is_err() {
                    continue;
                }
                passed += 1;
                let size = decimal_bin_size(usize::from(precision), usize::from(scale));
                // Zero, then minus zero: the sign bit is flipped, a negative's digits inverted.
                for (first, rest) in [(0x80, 0x00), (0x7f, 0xff)] {
                    let mut bytes = vec![rest; size];
                    bytes[0] = first;
                    let read = Decimal::read_bin(&bytes[..], usize::from(precision), usize::from(scale), false);
                    assert!(read.is_ok(), "DECIMAL({precision},{scale}) from {bytes:x?}: {read:?}");
                }
            }
        }
        // DECIMAL(1..=65, 0..=min(precision, 38)).
        assert_eq!(passed, (1..=65).map(|p: usize| p.min(38) + 1).sum::<usize>());
        assert!(check_decimal_column(&[65, 38]).is_ok(), "MariaDB's largest");
        for corrupt in [&[2u8, 5][..], &[0, 0], &[66, 2], &[65, 39], &[10], &[]] {
            assert!(check_decimal_column(corrupt).is_err(), "{corrupt:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// The value decoder's fuzz target: any value the row parser can
        /// hand over, for any column shape, decodes or errs; never panics.
        #[test]
        fn any_value_for_any_column_never_panics(
            kind in any_kind(),
            value in any_value(),
            unsigned in proptest::prelude::any::<bool>(),
            fsp in 0u8..=9,
            labels in proptest::collection::vec("[a-z]{0,3}", 0..4),
            charset in proptest::option::of(proptest::sample::select(vec!["utf8mb4", "latin1", "gbk", "utf16", "binary", "nonesuch"])),
        ) {
            let col = ColumnInfo { name: "c".into(), kind, unsigned, charset: charset.map(str::to_owned), labels, fsp };
            let _ = decode(Some(&BinlogValue::Value(value.clone())), &col);
            let _ = decode_query(&value, &col);
        }

        /// Binary JSON from arbitrary bytes: whatever mysql_common accepts
        /// decodes or errs; never panics.
        #[test]
        fn arbitrary_binary_json_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            use mysql_common::io::ParseBuf;
            use mysql_common::proto::MyDeserialize;
            if let Ok(v) = JsonbValue::deserialize((), &mut ParseBuf(&bytes)) {
                let _ = decode(Some(&BinlogValue::Jsonb(v)), &col(ColumnKind::Json, false));
            }
        }
    }
}
