//! Remote write 2.0: snapshot series → an `io.prometheus.write.v2.Request`,
//! every string once in its symbols table. A label value is a symbol of
//! the process' table of values already ([`symbols`]), so the request's
//! table is filled from it by index (a map kept between requests), and
//! only names, help texts and the common labels are looked up by text.
//! Spec: <https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/>.

use std::borrow::Borrow;
use std::collections::HashMap;

use bytes::BytesMut;
use prost::Message;

use crate::series::symbols::{self, Symbol};
use crate::series::{Series, Value};

/// Messages generated from `proto/io/prometheus/write/v2/types.proto` (remote write 2.0).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}

/// Encodes one remote-write 2.0 request: every string once in the symbols
/// table (index 0 is ""), series referring to it, type and help per series.
pub fn encode<S: Borrow<Series>>(series: &[S], timestamp_ms: i64) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_into(series, timestamp_ms, &mut buf, &mut Vec::new());
    Vec::from(buf)
}

/// Where each of the process' symbols is in one request's table, by
/// [`Symbol`]; `NONE` for those it does not have yet. Kept between requests
/// (the entries a request set are reset after it), so that a request's
/// table is filled from the process' one by indexing, not hashing.
pub(super) type SymbolMap = Vec<u32>;

const NONE: u32 = u32::MAX;

/// [`encode`] into `buf`, which is cleared first.
pub(super) fn encode_into<S: Borrow<Series>>(
    series: &[S],
    timestamp_ms: i64,
    buf: &mut BytesMut,
    map: &mut SymbolMap,
) {
    buf.clear();
    let table = symbols::table().read();
    if map.len() < table.bound() {
        map.resize(table.bound(), NONE);
    }
    let mut symbols: Vec<&str> = vec![""];
    // The request's entries that came from the process' table, to reset.
    let mut mapped: Vec<Symbol> = Vec::new();
    // Every text given a symbol, each once.
    let mut by_text: HashMap<&str, u32> = HashMap::from([("", 0)]);
    let mut timeseries = Vec::with_capacity(series.len());
    for s in series {
        let s = s.borrow();
        let mut refs = Vec::with_capacity(24);
        for (name, value) in s.labels.raw(&table) {
            refs.push(text_ref(name, &mut symbols, &mut by_text));
            let value_ref = match value {
                Value::Symbol(id) => {
                    if map[id as usize] == NONE {
                        // Once per value and request: the same text as a
                        // name or help is still one symbol.
                        map[id as usize] = text_ref(table.get(id), &mut symbols, &mut by_text);
                        mapped.push(id);
                    }
                    map[id as usize]
                }
                Value::Text(text) => text_ref(text, &mut symbols, &mut by_text),
            };
            refs.push(value_ref);
        }
        let help_ref = text_ref(s.family().help(), &mut symbols, &mut by_text);
        timeseries.push(proto::TimeSeries {
            labels_refs: refs,
            samples: vec![proto::Sample {
                value: s.value,
                timestamp: timestamp_ms,
            }],
            metadata: Some(proto::Metadata {
                r#type: proto::metadata::MetricType::Gauge as i32,
                help_ref,
                unit_ref: 0,
            }),
        });
    }
    for id in mapped {
        map[id as usize] = NONE;
    }
    let request = proto::Request {
        symbols: symbols.into_iter().map(str::to_owned).collect(),
        timeseries,
    };
    buf.reserve(request.encoded_len());
    request.encode_raw(buf);
}

/// The index of `text` in a request's symbols, added if it is new.
fn text_ref<'a>(
    text: &'a str,
    symbols: &mut Vec<&'a str>,
    by_text: &mut HashMap<&'a str, u32>,
) -> u32 {
    let next = symbols.len() as u32;
    *by_text.entry(text).or_insert_with(|| {
        symbols.push(text);
        next
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::remote_write_v1;
    use crate::series::fixtures::{pairs, three_pods};

    #[test]
    fn v2_symbols_are_deduplicated_and_start_empty() {
        let snap = three_pods("job");
        let body = encode(&snap.series, snap.timestamp_ms);
        let request = proto::Request::decode(body.as_slice()).expect("valid protobuf");
        assert_eq!(request.symbols[0], "");
        let unique: std::collections::HashSet<_> = request.symbols.iter().collect();
        assert_eq!(unique.len(), request.symbols.len(), "no symbol twice");
        assert_eq!(request.timeseries.len(), 3);
        for (ts, series) in request.timeseries.iter().zip(&snap.series) {
            let labels: Vec<(String, String)> = ts
                .labels_refs
                .chunks(2)
                .map(|p| {
                    (
                        request.symbols[p[0] as usize].clone(),
                        request.symbols[p[1] as usize].clone(),
                    )
                })
                .collect();
            assert_eq!(labels, pairs(series));
            let metadata = ts.metadata.as_ref().unwrap();
            assert_eq!(metadata.r#type, proto::metadata::MetricType::Gauge as i32);
            assert_eq!(
                request.symbols[metadata.help_ref as usize],
                series.family().help()
            );
            assert_eq!(ts.samples[0].timestamp, snap.timestamp_ms);
        }
        // A 1.x receiver decoding a 2.0 body sees no series: fields 1-3 are reserved.
        assert!(
            remote_write_v1::proto::WriteRequest::decode(body.as_slice())
                .unwrap()
                .timeseries
                .is_empty()
        );
    }
}
