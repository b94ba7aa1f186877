//! `log_date_format`: PM2 formats timestamps with dayjs tokens (`YYYY-MM-DD HH:mm:ss Z`);
//! this turns such a format into chrono format items once, then formats each line's time.

use chrono::format::{Fixed, Item, Numeric, Pad};
use chrono::{DateTime, Local};

/// A dayjs format, compiled.
#[derive(Debug, Clone)]
pub struct DateFormat {
    items: Vec<Piece>,
}

/// chrono has no public item for milliseconds without a dot, so those are written here.
#[derive(Debug, Clone)]
enum Piece {
    Item(Item<'static>),
    Millis,
}

/// dayjs tokens, longest first so that `YYYY` wins over `YY` and `MM` over `M`.
const TOKENS: &[(&str, Token)] = &[
    ("YYYY", Token::Num(Numeric::Year, Pad::Zero)),
    ("YY", Token::Num(Numeric::YearMod100, Pad::Zero)),
    ("MMMM", Token::Fix(Fixed::LongMonthName)),
    ("MMM", Token::Fix(Fixed::ShortMonthName)),
    ("MM", Token::Num(Numeric::Month, Pad::Zero)),
    ("M", Token::Num(Numeric::Month, Pad::None)),
    ("DD", Token::Num(Numeric::Day, Pad::Zero)),
    ("D", Token::Num(Numeric::Day, Pad::None)),
    ("dddd", Token::Fix(Fixed::LongWeekdayName)),
    ("ddd", Token::Fix(Fixed::ShortWeekdayName)),
    ("HH", Token::Num(Numeric::Hour, Pad::Zero)),
    ("H", Token::Num(Numeric::Hour, Pad::None)),
    ("hh", Token::Num(Numeric::Hour12, Pad::Zero)),
    ("h", Token::Num(Numeric::Hour12, Pad::None)),
    ("mm", Token::Num(Numeric::Minute, Pad::Zero)),
    ("m", Token::Num(Numeric::Minute, Pad::None)),
    ("ss", Token::Num(Numeric::Second, Pad::Zero)),
    ("s", Token::Num(Numeric::Second, Pad::None)),
    ("SSS", Token::Millis),
    ("ZZ", Token::Fix(Fixed::TimezoneOffset)),
    ("Z", Token::Fix(Fixed::TimezoneOffsetColon)),
    ("A", Token::Fix(Fixed::UpperAmPm)),
    ("a", Token::Fix(Fixed::LowerAmPm)),
    ("X", Token::Num(Numeric::Timestamp, Pad::None)),
];

#[derive(Debug, Clone)]
enum Token {
    Num(Numeric, Pad),
    Fix(Fixed),
    Millis,
}

impl DateFormat {
    /// Compiles a dayjs format. Text in `[brackets]` is literal, as in dayjs; any other
    /// character that is no token is kept as it is.
    pub fn new(format: &str) -> DateFormat {
        let mut items = Vec::new();
        let mut rest = format;
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('[') {
                let end = inner.find(']').unwrap_or(inner.len());
                items.push(Piece::Item(Item::OwnedLiteral(inner[..end].into())));
                rest = inner.get(end + 1..).unwrap_or("");
                continue;
            }
            if let Some((tok, kind)) = TOKENS.iter().find(|(t, _)| rest.starts_with(t)) {
                items.push(match kind {
                    Token::Num(n, p) => Piece::Item(Item::Numeric(n.clone(), *p)),
                    Token::Fix(f) => Piece::Item(Item::Fixed(f.clone())),
                    Token::Millis => Piece::Millis,
                });
                rest = &rest[tok.len()..];
                continue;
            }
            let ch = rest.chars().next().expect("rest is not empty");
            items.push(Piece::Item(Item::OwnedLiteral(ch.to_string().into())));
            rest = &rest[ch.len_utf8()..];
        }
        DateFormat { items }
    }

    pub fn format(&self, t: &DateTime<Local>) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for piece in &self.items {
            let _ = match piece {
                Piece::Item(item) => write!(out, "{}", t.format_with_items(std::iter::once(item))),
                Piece::Millis => write!(out, "{:03}", t.timestamp_subsec_millis()),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeZone};

    fn at() -> DateTime<Local> {
        let t = FixedOffset::east_opt(0)
            .unwrap()
            .with_ymd_and_hms(2026, 3, 7, 14, 5, 9)
            .unwrap();
        t.with_timezone(&Local)
    }

    #[test]
    fn dayjs_tokens() {
        let t = at();
        let naive = t.naive_local();
        let cases = [
            ("YYYY-MM-DD", naive.format("%Y-%m-%d").to_string()),
            (
                "YYYY-MM-DDTHH:mm:ss",
                naive.format("%Y-%m-%dT%H:%M:%S").to_string(),
            ),
            (
                "D/M/YY h:mm A",
                naive.format("%-d/%-m/%y %-I:%M %p").to_string(),
            ),
            ("[at] HH:mm", naive.format("at %H:%M").to_string()),
            ("HH:mm:ss.SSS", naive.format("%H:%M:%S.000").to_string()),
        ];
        for (fmt, want) in cases {
            assert_eq!(DateFormat::new(fmt).format(&t), want, "format {fmt}");
        }
    }

    #[test]
    fn offset_token_has_a_colon() {
        let s = DateFormat::new("Z").format(&at());
        assert_eq!(s.len(), 6, "{s}");
        assert_eq!(&s[3..4], ":");
    }
}
