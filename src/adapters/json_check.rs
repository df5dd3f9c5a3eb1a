//! Whether bytes are one UTF-8 JSON value: a validating scan that neither allocates nor
//! decodes, for the stream relay, which must refuse a garbled event but has no use for its
//! contents.
//!
//! It accepts exactly what `serde_json` accepts when it parses into `IgnoredAny` (RFC 8259:
//! no trailing commas, no control characters inside strings, `\u` escapes of four hex digits
//! whatever code point they name) and nests at most `MAX_DEPTH` arrays or objects. A
//! property test holds it to `serde_json` on arbitrary input.

/// The deepest nesting accepted (serde_json's own limit is 128).
pub const MAX_DEPTH: u32 = 127;

/// Whether `bytes` are UTF-8 and hold one JSON value, with optional whitespace around it.
pub fn is_json(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok() && Scanner { b: bytes, i: 0 }.document()
}

/// Bytes that end the fast part of a string: its quote, an escape, a control character.
static STRING_STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stop[b] = true;
        b += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn document(mut self) -> bool {
        if !self.value() {
            return false;
        }
        self.ws();
        self.i == self.b.len()
    }

    /// One value, nested containers included; iterative, with the open containers as a stack
    /// of bits (1: object, 0: array).
    fn value(&mut self) -> bool {
        let (mut stack, mut depth) = (0u128, 0u32);
        loop {
            self.ws();
            let opened = match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    if depth == MAX_DEPTH {
                        return false;
                    }
                    self.i += 1;
                    self.ws();
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.eat(close) {
                        false
                    } else {
                        stack = stack << 1 | u128::from(open == b'{');
                        depth += 1;
                        true
                    }
                }
                _ if self.scalar() => false,
                _ => return false,
            };
            if opened {
                if stack & 1 == 1 && !self.key() {
                    return false;
                }
                continue;
            }
            // After a value: close what ends here, then a comma leads to the next value.
            loop {
                if depth == 0 {
                    return true;
                }
                self.ws();
                let in_object = stack & 1 == 1;
                match self.next() {
                    Some(b',') if in_object => {
                        self.ws();
                        if !self.key() {
                            return false;
                        }
                        break;
                    }
                    Some(b',') => break,
                    Some(b'}') if in_object => {}
                    Some(b']') if !in_object => {}
                    _ => return false,
                }
                stack >>= 1;
                depth -= 1;
            }
        }
    }

    /// An object's key and its colon.
    fn key(&mut self) -> bool {
        if !(self.peek() == Some(b'"') && self.string()) {
            return false;
        }
        self.ws();
        self.eat(b':')
    }

    fn scalar(&mut self) -> bool {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    /// A string, from its opening quote.
    fn string(&mut self) -> bool {
        self.i += 1;
        loop {
            while self.i < self.b.len() && !STRING_STOP[usize::from(self.b[self.i])] {
                self.i += 1;
            }
            match self.next() {
                Some(b'"') => return true,
                Some(b'\\') => match self.next() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        for _ in 0..4 {
                            if !self.next().is_some_and(|h| h.is_ascii_hexdigit()) {
                                return false;
                            }
                        }
                    }
                    _ => return false,
                },
                _ => return false,
            }
        }
    }

    fn number(&mut self) -> bool {
        self.eat(b'-');
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return false,
        }
        if self.eat(b'.') && !self.one_or_more_digits() {
            return false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            return self.one_or_more_digits();
        }
        true
    }

    fn one_or_more_digits(&mut self) -> bool {
        let start = self.i;
        self.digits();
        self.i > start
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.b[self.i..].starts_with(word);
        self.i += word.len();
        found
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.i += 1;
        }
        found
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.i += 1;
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn serde_accepts(bytes: &[u8]) -> bool {
        std::str::from_utf8(bytes)
            .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
    }

    #[test]
    fn agrees_with_serde_json_on_awkward_documents() {
        let cases: &[&[u8]] = &[
            b"{}",
            b" [ ] ",
            b"{\"a\":1}",
            b"{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\\"y\\u00e9\\n\"}",
            b"-0.5e+10",
            b"0",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"-",
            b"true",
            b"tru",
            b"nul",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"\"tab\there\"",
            b"\"caf\xc3\xa9\"",
            b"\"\xff\"",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"{\"a\" 1}",
            b"{1:2}",
            b"{\"a\":1}}",
            b"{\"a\":1} x",
            b"",
            b"   ",
            b"not json",
            b"[DONE]",
            b"{\"a\":",
            b"\"open",
        ];
        for case in cases {
            assert_eq!(
                is_json(case),
                serde_accepts(case),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn a_stop_byte_anywhere_in_a_long_string_is_seen() {
        let text = "0123456789abcdefghijklmnopqrstuv";
        for at in 0..text.len() {
            for stop in [
                "\"", "\\", "\\n", "\\u00e9", "\t", "\u{1}", "\u{1f}", "é", "\\q", " ",
            ] {
                let doc = format!("[\"{}{stop}{}\",1]", &text[..at], &text[at..]);
                assert_eq!(
                    is_json(doc.as_bytes()),
                    serde_accepts(doc.as_bytes()),
                    "{doc:?}"
                );
            }
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(is_json(deep(MAX_DEPTH as usize).as_bytes()));
        assert!(!is_json(deep(MAX_DEPTH as usize + 1).as_bytes()));
        assert!(!is_json(deep(100_000).as_bytes()), "no stack overflow");
    }

    /// JSON-like bytes: the tokens JSON is made of, mixed with arbitrary bytes.
    fn json_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"{".to_vec()),
            Just(b"}".to_vec()),
            Just(b"[".to_vec()),
            Just(b"]".to_vec()),
            Just(b",".to_vec()),
            Just(b":".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\"k\":".to_vec()),
            Just(b"\\".to_vec()),
            Just(b"\\u00".to_vec()),
            Just(b" ".to_vec()),
            Just(b"-1.5e3".to_vec()),
            Just(b"0".to_vec()),
            Just(b"true".to_vec()),
            Just(b"null".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn accepts_exactly_what_serde_json_accepts(bytes in json_like()) {
            prop_assert_eq!(is_json(&bytes), serde_accepts(&bytes));
        }

        #[test]
        fn accepts_every_document_serde_json_writes(value in any::<(String, Vec<(String, f64, bool)>)>()) {
            let bytes = serde_json::to_vec(&value).unwrap();
            prop_assert!(is_json(&bytes));
        }
    }
}
