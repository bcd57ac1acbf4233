//! The civic API contract: the messages and services of every `civic.<domain>.v1` package,
//! compiled from `proto/` at build time, with canonical proto3 JSON (serde) for every message and
//! the encoded descriptor set for server reflection and HTTP transcoding.
#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs, rustdoc::all)] // generated code: lints apply to the .proto sources

/// The encoded `FileDescriptorSet` of every civic and vendored Google proto, imports included,
/// with source comments and extension options (such as `google.api.http`) kept.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/civic_descriptor.bin"));

/// The civic packages.
pub mod civic {
    /// Service items and the reception desk.
    pub mod catalogue {
        /// Version 1 of the catalogue API.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/civic.catalogue.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/civic.catalogue.v1.serde.rs"));
        }
    }
}

/// Vendored Google API packages.
pub mod google {
    /// `google.rpc`: status and error details.
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.rpc.serde.rs"));
    }
    /// `google.api`: HTTP rules, field behaviour and resource annotations.
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}

pub use civic::catalogue::v1 as catalogue;
