//! Decoding and encoding speed of UPDATEs full of IPv4 /24s, tern against netgauze-bgp-pkt.
//!
//! The stream is 100,000 distinct /24s packed by [`UpdateBuilder`] for a 4-octet-AS session with
//! ORIGIN, a 3-AS AS_PATH, NEXT_HOP, MED and two communities: about 1000 prefixes in each
//! 4096-octet UPDATE. Every benchmark reports prefixes per second.
//!
//! - `decode/tern`: [`frame`] and [`Message::decode`] over the whole stream.
//! - `decode/netgauze`: `BgpMessage::parse` over the same bytes.
//! - `encode/tern`: [`UpdateBuilder::announce`] of the 100,000 routes into a reused buffer.
//! - `encode/netgauze`: writing the same UPDATEs, decoded by netgauze beforehand, into a reused
//!   buffer.
//!
//! Run with `cargo bench -p tern-bgp --bench codec`; `-- --test` runs each benchmark once.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnetwork::{IpNetwork, Ipv4Network};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use tern_bgp::wire::{
    AsPath, Community, Context, Family, Message, NextHop, Nlri, Origin, PathAttributes,
    UpdateBuilder, frame,
};

const ROUTES: usize = 100_000;

fn context() -> Context {
    Context {
        four_octet_as: true,
        ..Context::default()
    }
}

/// 100,000 distinct /24s from 1.0.0.0/24 up.
fn routes() -> Vec<Nlri> {
    (0..ROUTES as u32)
        .map(|i| {
            let network = Ipv4Network::new(Ipv4Addr::from((1 << 24) + (i << 8)), 24).unwrap();
            Nlri::new(IpNetwork::V4(network))
        })
        .collect()
}

fn attributes() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence([65001, 65002, 4_200_000_001])),
        med: Some(100),
        communities: vec![Community::new(65001, 100), Community::new(65001, 200)],
        ..PathAttributes::default()
    }
}

const NEXT_HOP: NextHop = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));

fn encode_tern(context: &Context, attributes: &PathAttributes, routes: &[Nlri], out: &mut Vec<u8>) {
    out.clear();
    UpdateBuilder::new(context)
        .announce(Family::IPV4_UNICAST, attributes, NEXT_HOP, routes, out)
        .unwrap();
}

/// Frames and decodes every message; returns how many prefixes they announce.
fn decode_tern(stream: &[u8], context: &Context) -> usize {
    let mut prefixes = 0;
    let mut rest = stream;
    while let Some(header) = frame(rest, context).unwrap() {
        let (bytes, tail) = rest.split_at(header.length);
        match Message::decode(bytes, context).unwrap() {
            Message::Update(update) => prefixes += update.nlri.len(),
            other => panic!("not an UPDATE: {other:?}"),
        }
        rest = tail;
    }
    assert!(rest.is_empty());
    prefixes
}

/// Parses every message with netgauze; returns how many prefixes they announce.
fn decode_netgauze(stream: &[u8]) -> usize {
    let mut context = BgpParsingContext::default();
    let mut reader = SliceReader::new(stream);
    let mut prefixes = 0;
    while !reader.is_empty() {
        match BgpMessage::parse(&mut reader, &mut context).unwrap() {
            BgpMessage::Update(update) => prefixes += update.nlri().len(),
            other => panic!("not an UPDATE: {other:?}"),
        }
    }
    prefixes
}

fn parse_netgauze(stream: &[u8]) -> Vec<BgpMessage> {
    let mut context = BgpParsingContext::default();
    let mut reader = SliceReader::new(stream);
    let mut messages = Vec::new();
    while !reader.is_empty() {
        messages.push(BgpMessage::parse(&mut reader, &mut context).unwrap());
    }
    messages
}

fn encode_netgauze(messages: &[BgpMessage], out: &mut Vec<u8>) {
    out.clear();
    for message in messages {
        message.write(out).unwrap();
    }
}

fn codec(c: &mut Criterion) {
    let context = context();
    let attributes = attributes();
    let routes = routes();
    let mut stream = Vec::new();
    encode_tern(&context, &attributes, &routes, &mut stream);

    // Outside the timed loops: both decoders see every prefix, and netgauze writes the same bytes.
    let messages = parse_netgauze(&stream);
    assert_eq!(decode_tern(&stream, &context), ROUTES);
    assert_eq!(decode_netgauze(&stream), ROUTES);
    let mut rewritten = Vec::new();
    encode_netgauze(&messages, &mut rewritten);
    assert!(
        rewritten == stream,
        "netgauze writes the UPDATEs differently"
    );
    println!(
        "stream: {ROUTES} /24s in {} UPDATEs, {} octets",
        messages.len(),
        stream.len()
    );

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(ROUTES as u64));
    group.bench_function("tern", |b| {
        b.iter(|| decode_tern(black_box(&stream), &context))
    });
    group.bench_function("netgauze", |b| {
        b.iter(|| decode_netgauze(black_box(&stream)))
    });
    group.finish();

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(ROUTES as u64));
    let mut out = Vec::with_capacity(stream.len());
    group.bench_function("tern", |b| {
        b.iter(|| {
            encode_tern(&context, &attributes, black_box(&routes), &mut out);
            out.len()
        })
    });
    group.bench_function("netgauze", |b| {
        b.iter(|| {
            encode_netgauze(black_box(&messages), &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short enough for a quick run on a busy machine.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = codec
}
criterion_main!(benches);
