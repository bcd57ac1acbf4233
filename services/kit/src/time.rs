//! Time as the store keeps it: RFC 3339 text in UTC with microseconds, so text order is time
//! order on both backends, and its conversion to protobuf timestamps.

use chrono::{DateTime, SecondsFormat, Utc};

/// The current time as stored text.
pub fn now_text() -> String {
    to_text(Utc::now())
}

/// A time as stored text.
pub fn to_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Stored text back to a time; `None` for text the store never writes.
pub fn from_text(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// A time as a protobuf timestamp.
pub fn to_timestamp(t: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

/// A protobuf timestamp as a time (`None` for none, or one out of range).
pub fn from_timestamp(t: Option<&pbjson_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
}

/// Stored text as a protobuf timestamp (`None` for an empty or unreadable value).
pub fn text_to_timestamp(s: &str) -> Option<pbjson_types::Timestamp> {
    from_text(s).map(to_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_order_is_time_order() {
        let a = Utc::now();
        let b = a + chrono::Duration::microseconds(1);
        assert!(to_text(a) < to_text(b));
        assert_eq!(from_text(&to_text(a)), Some(a.with_nanosecond_micros()));
    }

    trait Micros {
        fn with_nanosecond_micros(self) -> Self;
    }
    impl Micros for DateTime<Utc> {
        fn with_nanosecond_micros(self) -> Self {
            use chrono::Timelike;
            self.with_nanosecond(self.nanosecond() / 1000 * 1000).expect("valid nanos")
        }
    }
}
