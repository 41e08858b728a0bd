//! Protocol benchmarks: header codec, stream decoding of small and large
//! frames (against a plain memcpy of the same bytes), QUERY encoding.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use thingsdb_benches::{large_frames, query_vars, small_frames};
use thingsdb_protocol::request;
use thingsdb_protocol::{decode_frame, Decoder, Header, PackageType, MAX_PAYLOAD};

/// Size of one simulated socket read.
const READ: usize = 64 * 1024;

fn header(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    let h = Header::new(PackageType::Data, 7, 1234);
    g.bench_function("encode", |b| b.iter(|| black_box(black_box(h).encode())));
    let bytes = h.encode();
    g.bench_function("decode", |b| {
        b.iter(|| Header::decode(black_box(&bytes), MAX_PAYLOAD).unwrap())
    });
    g.finish();
}

/// Drains every frame out of a decoder; returns how many there were.
fn drain(d: &mut Decoder) -> usize {
    let mut n = 0;
    while let Some(f) = d.next_frame().unwrap() {
        black_box(&f);
        n += 1;
    }
    n
}

/// The decoding variants over one stream, in one group.
fn decode_group(c: &mut Criterion, name: &str, wire: &Bytes, frames: usize, t: Throughput) {
    let mut g = c.benchmark_group(name);
    g.throughput(t);
    if wire.len() > 1 << 20 {
        g.sample_size(20);
    }
    let len = wire.len();

    // The reference: copying the same bytes into a buffer that exists.
    let mut dst = vec![0u8; len];
    g.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(wire));
            black_box(&dst);
        })
    });

    // Zero copy: the whole stream handed over as one `Bytes`.
    g.bench_function("feed_bytes", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            d.feed_bytes(wire.clone());
            assert_eq!(drain(&mut d), frames);
        })
    });

    // Copying: the whole stream copied into the decoder.
    g.bench_function("feed", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            d.feed(wire);
            assert_eq!(drain(&mut d), frames);
        })
    });

    // As from a socket: 64 KiB reads, copied in, frames taken after each.
    g.bench_function("feed_64k_reads", |b| {
        let mut d = Decoder::new();
        b.iter(|| {
            let mut n = 0;
            for chunk in wire.chunks(READ) {
                d.feed(chunk);
                n += drain(&mut d);
            }
            assert_eq!(n, frames);
        })
    });

    // The free function over a BytesMut the stream was read into.
    g.bench_function("decode_frame", |b| {
        let mut src = BytesMut::with_capacity(len);
        b.iter(|| {
            src.extend_from_slice(wire);
            let mut n = 0;
            while let Some(f) = decode_frame(&mut src, MAX_PAYLOAD).unwrap() {
                black_box(&f);
                n += 1;
            }
            assert_eq!(n, frames);
        })
    });
    g.finish();
}

fn small(c: &mut Criterion) {
    const N: usize = 10_000;
    let (wire, _) = small_frames(N);
    decode_group(
        c,
        "small_frames_per_frame",
        &wire,
        N,
        Throughput::Elements(N as u64),
    );
    decode_group(
        c,
        "small_frames_per_byte",
        &wire,
        N,
        Throughput::Bytes(wire.len() as u64),
    );
}

fn large(c: &mut Criterion) {
    for (count, size, name) in [(64, 64 * 1024, "frames_64KiB"), (8, 1 << 20, "frames_1MiB")] {
        let (wire, _) = large_frames(count, size);
        decode_group(c, name, &wire, count, Throughput::Bytes(wire.len() as u64));
    }
}

fn query(c: &mut Criterion) {
    const N: usize = 1000;
    let vars = query_vars();
    let mut g = c.benchmark_group("encode_query");
    g.throughput(Throughput::Elements(N as u64));
    let mut buf = BytesMut::with_capacity(N * 64);
    g.bench_function(BenchmarkId::new("with_vars", N), |b| {
        b.iter(|| {
            buf.clear();
            for i in 0..N {
                request::encode_query(
                    &mut buf,
                    i as u16,
                    black_box("//stuff"),
                    black_box("a * b;"),
                    Some(black_box(&vars)),
                )
                .unwrap();
            }
            black_box(&buf);
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = header, small, large, query
}
criterion_main!(benches);
