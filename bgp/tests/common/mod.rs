//! Helpers shared by the codec tests (hex input, message framing, and byte comparisons that print
//! a hex diff on failure) and the runtime tests (reading a message off a socket).
#![allow(dead_code)]

use std::net::Ipv4Addr;

use tern_bgp::wire::{Capability, Context, Family, HEADER_LEN, Message, Open};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// Reads one whole message off a socket (decoded without a negotiated context, which suits what
/// the runtime tests look at: OPEN, KEEPALIVE, NOTIFICATION and empty UPDATEs); `None` when the
/// connection ends first.
pub async fn read_message(stream: &mut TcpStream) -> Option<Message> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await.ok()?;
    let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
    let mut bytes = header.to_vec();
    bytes.resize(length, 0);
    stream.read_exact(&mut bytes[HEADER_LEN..]).await.ok()?;
    Some(Message::decode(&bytes, &Context::default()).expect("the speaker sends valid messages"))
}

/// Plays a peer on a raw socket: accepts the speaker's connection, reads its OPEN and answers
/// with an OPEN offering `hold_time` and a KEEPALIVE.
pub async fn accept_session(listener: &TcpListener, asn: u32, hold_time: u16) -> TcpStream {
    let (mut stream, _) = listener.accept().await.unwrap();
    assert!(matches!(
        read_message(&mut stream).await,
        Some(Message::Open(_))
    ));
    let open = Open::new(
        asn,
        hold_time,
        Ipv4Addr::new(10, 9, 9, 9),
        vec![Capability::Multiprotocol(Family::IPV4_UNICAST)],
    );
    let context = Context::default();
    let mut bytes = Message::Open(open).to_bytes(&context).unwrap();
    bytes.extend(Message::Keepalive.to_bytes(&context).unwrap());
    stream.write_all(&bytes).await.unwrap();
    stream
}
