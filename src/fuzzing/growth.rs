//! Parse time that grows with the input and no faster. Each parser is fed the
//! fuzzer's text repeated to a small size and to sixteen times that, up to the
//! bound the server puts on that input: linear code takes at most about sixteen
//! times as long, quadratic code (such as base58 decoding, before its length was
//! bounded) about 256 times. A ratio above 64 on a run long enough to time, four
//! measurements in a row, fails.

use super::Outcome;
use crate::identity::{parse_key_list, Identity, KeyListReader, MAX_KEY_TEXT};
use crate::protocol::read_frame;
use crate::verify::read_certificates;
use crate::verify::siwe::SiweMessage;
use crate::verify::sshsig::SshSig;
use std::time::{Duration, Instant};

type Parse = fn(&str);

/// The parsers, each with the largest input the server hands it.
const PARSERS: &[(&str, Parse, usize)] = &[
    ("frame", |t| drop(read_frame(t)), 64 * 1024),
    ("key list", |t| drop(parse_key_list(t)), 1024 * 1024),
    ("key list reader", read_streamed, 1024 * 1024),
    ("one key", |t| drop(Identity::parse(t)), 4 * MAX_KEY_TEXT),
    ("ssh signature", |t| drop(SshSig::decode(t)), 64 * 1024),
    ("siwe", |t| drop(SiweMessage::parse(t)), 64 * 1024),
    ("certificates", |t| drop(read_certificates(t)), 64 * 1024),
    ("settings", |t| drop(crate::config::Settings::from_toml(t)), 64 * 1024),
];

fn read_streamed(text: &str) {
    let mut reader = KeyListReader::default();
    let mut out = Vec::new();
    reader.feed(text.as_bytes(), &mut out);
    reader.finish(&mut out);
}

/// Fastest of three runs, to keep a preempted run from looking slow.
fn time(parse: Parse, text: &str) -> Duration {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            parse(text);
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Input: parser, prefix length, prefix, then the unit that repeats after the
/// prefix. `judge`: compare the times (the fuzzer); the corpus replay only parses,
/// as tests assert nothing about time.
pub fn growth(data: &[u8], judge: bool) -> Outcome {
    let [which, prefix_len, rest @ ..] = data else { return Ok(()) };
    let (name, parse, bound) = PARSERS[usize::from(*which) % PARSERS.len()];
    let (prefix, unit) = rest.split_at(usize::from(*prefix_len).min(rest.len()));
    let (Ok(prefix), Ok(unit)) = (std::str::from_utf8(prefix), std::str::from_utf8(unit)) else { return Ok(()) };
    if unit.is_empty() {
        return Ok(());
    }
    let large_units = bound.saturating_sub(prefix.len()) / unit.len();
    let small_units = large_units / 16;
    if small_units == 0 {
        return Ok(());
    }
    let small = format!("{prefix}{}", unit.repeat(small_units));
    let large = format!("{prefix}{}", unit.repeat(small_units * 16));
    if !judge {
        parse(&small);
        parse(&large);
        return Ok(());
    }
    // A blow-up must show every time: a busy machine (a build beside the fuzzer)
    // can slow one measurement of the large input by several times, so a suspect
    // ratio is measured again, up to three times, before it counts.
    let measure = || {
        let (t_small, t_large) = (time(parse, &small), time(parse, &large));
        (t_small, t_large, t_large.as_secs_f64() / t_small.as_secs_f64().max(1e-9))
    };
    let suspect = |(_, t_large, ratio): (Duration, Duration, f64)| t_large > Duration::from_millis(2) && ratio > 64.0;
    let mut measured = measure();
    for _ in 0..3 {
        if !suspect(measured) {
            return Ok(());
        }
        measured = measure();
    }
    let (t_small, t_large, ratio) = measured;
    if suspect(measured) {
        return Err(format!(
            "{name}: {} bytes took {t_small:?}, {} bytes took {t_large:?} ({ratio:.0}×): prefix {prefix:?}, unit {unit:?}",
            small.len(),
            large.len()
        ));
    }
    Ok(())
}
