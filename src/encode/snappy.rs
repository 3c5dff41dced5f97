//! Remote-write request bodies as they are sent: encoded, then compressed
//! with snappy's block format, in buffers one push reuses.

use std::borrow::Borrow;

use bytes::BytesMut;

use super::{remote_write_v1, remote_write_v2};
use crate::series::Series;

/// Snappy block format, as the spec requires (not the framed format).
pub fn compress(body: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(body)
}

/// The scratch space of one push, reused by each of its requests: a push
/// of 100k containers encodes ~60 MB, and fresh buffers per request cost
/// as much again in page faults and copies.
pub struct Buffers {
    raw: BytesMut,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
    /// Remote write 2.0's map of the process' symbols to a request's.
    symbols: remote_write_v2::SymbolMap,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            raw: BytesMut::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            symbols: Vec::new(),
        }
    }
}

impl Buffers {
    /// One remote-write 1.0 request body, compressed.
    pub fn v1<S: Borrow<Series>>(
        &mut self,
        series: &[S],
        timestamp_ms: i64,
    ) -> Result<Vec<u8>, snap::Error> {
        remote_write_v1::encode_into(series, timestamp_ms, &mut self.raw);
        self.compress()
    }

    /// One remote-write 2.0 request body, compressed.
    pub fn v2<S: Borrow<Series>>(
        &mut self,
        series: &[S],
        timestamp_ms: i64,
    ) -> Result<Vec<u8>, snap::Error> {
        remote_write_v2::encode_into(series, timestamp_ms, &mut self.raw, &mut self.symbols);
        self.compress()
    }

    /// The size of the last body before compression.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    fn compress(&mut self) -> Result<Vec<u8>, snap::Error> {
        let bound = snap::raw::max_compress_len(self.raw.len());
        // Grown, never shrunk or zeroed again: snappy writes before it reads.
        if self.compressed.len() < bound {
            self.compressed.resize(bound, 0);
        }
        let len = self.snappy.compress(&self.raw, &mut self.compressed)?;
        Ok(self.compressed[..len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{remote_write_v1::encode, remote_write_v2::encode as encode_v2};
    use crate::series::fixtures::three_pods;

    /// A request after a bigger one carries nothing of it: the buffers are
    /// reused, and each body is what a fresh encoding would have sent.
    #[test]
    fn reused_buffers_give_the_same_bodies_as_fresh_ones() {
        let snap = three_pods("job");
        let all: Vec<&Series> = snap.series.iter().collect();
        let mut buffers = Buffers::default();
        for batch in [&all[..], &all[..1], &all[1..2], &all[..]] {
            let fresh = compress(&encode(batch, snap.timestamp_ms)).unwrap();
            assert_eq!(buffers.v1(batch, snap.timestamp_ms).unwrap(), fresh);
            let fresh = compress(&encode_v2(batch, snap.timestamp_ms)).unwrap();
            assert_eq!(buffers.v2(batch, snap.timestamp_ms).unwrap(), fresh);
        }
    }

    #[test]
    fn snappy_block_format_round_trips() {
        let snap = three_pods("job");
        let body = encode(&snap.series, snap.timestamp_ms);
        let compressed = compress(&body).unwrap();
        assert_eq!(
            snap::raw::decompress_len(&compressed).unwrap(),
            body.len(),
            "block format starts with the length"
        );
        assert_eq!(
            snap::raw::Decoder::new()
                .decompress_vec(&compressed)
                .unwrap(),
            body
        );
    }
}
