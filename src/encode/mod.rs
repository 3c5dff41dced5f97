//! Encoders: the [`series`](crate::series) model written down in each
//! format a sink speaks, one module per format, none reading another's
//! bytes. They depend on the series model only; sending, retrying and
//! pausing are `remote_write`'s, serving is `server`'s.
//!
//! - [`remote_write_v1`]: remote write 1.0 (`prometheus.WriteRequest`);
//! - [`remote_write_v2`]: remote write 2.0 (`io.prometheus.write.v2.Request`);
//! - [`snappy`]: either as a request body, snappy-compressed in buffers
//!   that one push reuses;
//! - [`otlp`]: OTLP/HTTP (`ExportMetricsServiceRequest`), gzip-compressed;
//! - [`exposition`]: the Prometheus text format, for `/metrics` and
//!   `--dry-run`.

pub mod exposition;
pub mod otlp;
pub mod remote_write_v1;
pub mod remote_write_v2;
pub mod snappy;

pub use snappy::{compress, Buffers};
