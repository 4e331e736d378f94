//! The audit segment reader never panics on any bytes, and what it accepts
//! is exactly what the writer would have written: every decoded frame
//! re-encodes to the same bytes, frames are contiguous, and a bad tail
//! starts right after the last good frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_audit::frame::{self, HEADER_LEN};
use ward_audit::segments::{Scanned, Tail, scan};

fuzz_target!(|data: &[u8]| {
    // Half the inputs get a valid header so the fuzzer reaches the frames.
    let mut bytes = Vec::with_capacity(data.len() + HEADER_LEN);
    if data.first().is_some_and(|b| b & 1 == 0) {
        bytes.extend_from_slice(&frame::header(u64::from(data[0])));
        bytes.extend_from_slice(&data[1..]);
    } else {
        bytes.extend_from_slice(data);
    }
    let Ok(Scanned { frames, tail, .. }) = scan(&bytes) else { return };
    let mut at = HEADER_LEN;
    for (offset, f) in &frames {
        assert_eq!(*offset, at);
        let mut again = Vec::new();
        assert_eq!(frame::encode(f.payload, &mut again), Ok(f.leaf));
        assert_eq!(&bytes[at..at + f.len], again.as_slice());
        at += f.len;
    }
    match tail {
        Tail::Clean => assert_eq!(at, bytes.len()),
        Tail::Bad { offset, .. } => assert_eq!(offset, at),
    }
});
