//! The stages between the binlog source and the Kafka sink. None of them
//! does I/O, so each is tested on its own and benchmarked on the hot path.
//!
//! # Layout
//! - [`filter`]: which tables and rows a task replicates (`filters`).
//! - [`shape`]: the JSON message of a change (`flat_format`, `exclude_columns`).
//! - [`route`]: topic, message key and partition (`topic_mode`,
//!   `partition_mode`, `partition_columns`, `producer_partition_by_fallback`).
//! - [`murmur2`]: Kafka's default partitioner hash, so consumers can compute
//!   a key's partition themselves.
//! - [`limit`]: the token bucket of `rate_limit`.

pub mod filter;
pub mod limit;
pub mod murmur2;
pub mod route;
pub mod shape;
