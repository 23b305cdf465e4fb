//! Helpers shared by the codec tests: hex input, message framing, and byte comparisons that print
//! a hex diff on failure.
#![allow(dead_code)]

use tern_bgp::wire::{Context, Message};

/// Parses hex, ignoring whitespace, `_`, and comments from `#` to the end of a line.
pub fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.chars())
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {text:?}"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// A whole message: marker, length and `message_type` around the hex `body`.
pub fn message(message_type: u8, body: &str) -> Vec<u8> {
    let body = hex(body);
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    out.push(message_type);
    out.extend_from_slice(&body);
    out
}

/// Formats bytes as rows of 16, marking rows that differ from `other`.
fn dump(bytes: &[u8], other: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let start = row * 16;
        let differs = other.get(start..start + chunk.len()) != Some(chunk);
        out.push_str(if differs { "! " } else { "  " });
        out.push_str(&format!("{start:04x}:"));
        for byte in chunk {
            out.push_str(&format!(" {byte:02x}"));
        }
        out.push('\n');
    }
    out
}

/// Asserts two byte strings are equal, with a hex dump of both on failure.
#[track_caller]
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8]) {
    if actual != expected {
        let first = actual
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(actual.len().min(expected.len()));
        panic!(
            "bytes differ at offset {first} (lengths {} and {})\nactual:\n{}expected:\n{}",
            actual.len(),
            expected.len(),
            dump(actual, expected),
            dump(expected, actual)
        );
    }
}

/// Checks a golden pair both ways: the bytes decode to the value, and the value encodes to the
/// bytes.
#[track_caller]
pub fn golden(bytes: &[u8], value: &Message, context: &Context) {
    let decoded = Message::decode(bytes, context)
        .unwrap_or_else(|e| panic!("decoding failed: {e}\n{}", dump(bytes, bytes)));
    assert_eq!(&decoded, value, "decoded value differs");
    let encoded = value.to_bytes(context).expect("encoding failed");
    assert_bytes_eq(&encoded, bytes);
}

/// A context with 4-octet AS numbers, as almost every modern session negotiates.
pub fn four_octet() -> Context {
    Context {
        four_octet_as: true,
        ..Context::default()
    }
}
