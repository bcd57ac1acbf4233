//! The civic API contract: the messages and services of every `civic.<domain>.v1` package,
//! compiled from `proto/` at build time, with canonical proto3 JSON (serde) for every message,
//! the encoded descriptor set for server reflection and HTTP transcoding, and the topic of every
//! event message. The module tree follows the packages and is generated too: a new `.proto`
//! package needs no edit here.
#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs, rustdoc::all)] // generated code: lints apply to the .proto sources

/// The encoded `FileDescriptorSet` of every civic and vendored Google proto, imports included,
/// with source comments and extension options (such as `google.api.http`) kept.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/civic_descriptor.bin"));

/// A message that is published as an event, and the topic it is published under, both declared
/// in the protos with `option (civic.api.v1.event_topic)`. Producers and consumers in any service
/// agree on both through this crate alone.
pub trait Event: prost::Message + Default + 'static {
    /// The topic, such as `catalogue.item.published`.
    const TOPIC: &'static str;
}

include!(concat!(env!("OUT_DIR"), "/packages.rs"));
include!(concat!(env!("OUT_DIR"), "/events.rs"));

pub mod bounds;
include!(concat!(env!("OUT_DIR"), "/bounds.rs"));
