//! Rows written straight into a byte buffer: a JSON object's fields with their keys in order, a CSV
//! field quoted where it must be — no intermediate values, no allocation per row. The exports write
//! millions of rows; what each row costs is what they cost.

use serde_json::Value;

/// A JSON value of a row: the few shapes the exports write.
#[derive(Debug, Clone, Copy)]
pub enum Json<'a> {
    Num(u64),
    Str(&'a str),
    Null,
    Nums(&'a [u64]),
}

impl<'a> Json<'a> {
    pub fn opt_str(s: Option<&'a str>) -> Self {
        s.map_or(Json::Null, Json::Str)
    }

    pub fn to_value(self) -> Value {
        match self {
            Json::Num(n) => n.into(),
            Json::Str(s) => s.into(),
            Json::Null => Value::Null,
            Json::Nums(v) => v.into(),
        }
    }

    /// Writes the value as serde_json prints it.
    pub fn write(self, out: &mut Vec<u8>) {
        match self {
            Json::Num(n) => num(out, n),
            Json::Str(s) => string(out, s),
            Json::Null => out.extend_from_slice(b"null"),
            Json::Nums(v) => {
                out.push(b'[');
                for (i, n) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    num(out, *n);
                }
                out.push(b']');
            }
        }
    }
}

/// A number, in decimal.
pub fn num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string, escaped as serde_json escapes it.
pub fn string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes `"key":` for the next field of an object (`first`: no comma before it).
pub fn key(out: &mut Vec<u8>, first: bool, key: &str) {
    if !first {
        out.push(b',');
    }
    string(out, key);
    out.push(b':');
}

/// Writes JSON objects with their keys sorted as serde_json's map sorts them: the same bytes as the
/// object built as a `serde_json::Value` and printed. Rows of one kind have the same keys in the
/// same order: their sorted order is worked out once per shape.
#[derive(Default)]
pub struct SortedObjects {
    /// (keys as given, the order to write them in).
    shapes: Vec<(Vec<&'static str>, Vec<usize>)>,
}

/// Shapes remembered (a recording has a few kinds of rows).
const SHAPES: usize = 32;

impl SortedObjects {
    pub fn write(&mut self, out: &mut Vec<u8>, fields: &[(&'static str, Field<'_>)]) {
        let same = |keys: &[&'static str]| {
            keys.len() == fields.len() && keys.iter().zip(fields).all(|(a, (b, _))| std::ptr::eq(*a, *b) || a == b)
        };
        let i = match self.shapes.iter().position(|(keys, _)| same(keys)) {
            Some(i) => i,
            None => {
                let mut order: Vec<usize> = (0..fields.len()).collect();
                order.sort_by_key(|&i| fields[i].0);
                if self.shapes.len() == SHAPES {
                    self.shapes.clear();
                }
                self.shapes.push((fields.iter().map(|(k, _)| *k).collect(), order));
                self.shapes.len() - 1
            }
        };
        out.push(b'{');
        for (n, &i) in self.shapes[i].1.iter().enumerate() {
            let (k, v) = &fields[i];
            key(out, n == 0, k);
            match v {
                Field::Value(v) => v.write(out),
                Field::Object(write) => write(out),
            }
        }
        out.push(b'}');
    }
}

/// A field's value: a plain value, or one written by a function (a nested object).
pub enum Field<'a> {
    Value(Json<'a>),
    Object(&'a dyn Fn(&mut Vec<u8>)),
}

/// A CSV field: as it is, or quoted (its quotes doubled) where it holds a comma, a quote or a line
/// break.
pub fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Bytes in lowercase hex, two digits each, no separator.
pub fn hex_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.extend_from_slice(&[DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_written_as_serde_json_prints_it() {
        let nested = |out: &mut Vec<u8>| out.extend_from_slice(b"{\"a\":1}");
        let fields = [
            ("zeta", Field::Value(Json::Str("quote \" and \\ and \u{1} and é"))),
            ("alpha", Field::Value(Json::Num(u64::MAX))),
            ("mid", Field::Value(Json::Null)),
            ("list", Field::Value(Json::Nums(&[1, 2]))),
            ("nest", Field::Object(&nested)),
        ];
        let (mut out, mut objects) = (Vec::new(), SortedObjects::default());
        objects.write(&mut out, &fields);
        // The second time, the same order from the shape remembered.
        let first = out.clone();
        out.clear();
        objects.write(&mut out, &fields);
        assert_eq!(out, first);
        let value = serde_json::json!({
            "zeta": "quote \" and \\ and \u{1} and é", "alpha": u64::MAX, "mid": null, "list": [1, 2], "nest": {"a": 1}
        });
        assert_eq!(String::from_utf8(out).unwrap(), value.to_string());
    }

    #[test]
    fn csv_fields_are_quoted_only_where_they_must_be() {
        let mut out = Vec::new();
        for s in ["plain", "a,b", "say \"hi\"", "two\nlines"] {
            csv_field(&mut out, s);
            out.push(b'|');
        }
        assert_eq!(String::from_utf8(out).unwrap(), "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|");
    }
}
