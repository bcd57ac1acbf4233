//! Every bound the protos declare holds on the wire: for every RPC of every civic service, a
//! request with any one bounded field one past its bound — a length, a number of items, a
//! number's range; at the top or inside the messages it holds — is INVALID_ARGUMENT naming that
//! field, whoever sends it and before any handler runs.
//! And a query of megabytes is refused at once while other calls go on being answered.

mod common;

use bytes::{Buf, BufMut};
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use civic_proto::catalogue::{GetServiceItemRequest, SearchServiceItemsRequest};
use common::spawn_app;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_types::StatusExt;

/// Sends and receives encoded messages as they are.
#[derive(Debug, Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// One bounded field, reached from a request: its path in the request and how to set it.
struct Bound {
    path: String,
    steps: Vec<FieldDescriptor>,
    items: Option<u32>,
    length: Option<u32>,
    /// A number's declared range, `(minimum, maximum)`, either end open.
    range: Option<(f64, f64)>,
}

/// A number field's declared range, if it has one.
fn range_of(field: &FieldDescriptor, pool: &DescriptorPool) -> Option<(f64, f64)> {
    let limit = |name: &str| {
        let option = pool.get_extension_by_name(name).expect("option");
        let options = field.options();
        options.has_extension(&option).then(|| options.get_extension(&option).as_f64()).flatten()
    };
    let (low, high) = (limit("civic.api.v1.minimum"), limit("civic.api.v1.maximum"));
    (low.is_some() || high.is_some()).then(|| (low.unwrap_or(f64::NEG_INFINITY), high.unwrap_or(f64::INFINITY)))
}

/// A number of `field`'s kind.
fn number(field: &FieldDescriptor, x: f64) -> Value {
    match field.kind() {
        Kind::Double => Value::F64(x),
        Kind::Float => Value::F32(x as f32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(x as i64),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(x as u64),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(x as u32),
        _ => Value::I32(x as i32),
    }
}

/// An empty message of `descriptor` whose ranged numbers hold a value within their range (a
/// zero may be out of it: a weekday is 1 to 7), so that only the bound under test is broken.
fn within(descriptor: MessageDescriptor, pool: &DescriptorPool) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    for field in descriptor.fields() {
        if let Some((low, high)) = range_of(&field, pool)
            && !(low..=high).contains(&0.0)
        {
            message.set_field(&field, number(&field, if low.is_finite() { low } else { high }));
        }
    }
    message
}

/// Every bounded field of `message` and of the civic messages it holds (the first element of
/// a repeated one).
fn bounds_of(
    message: &MessageDescriptor,
    pool: &DescriptorPool,
    prefix: &str,
    steps: &[FieldDescriptor],
    out: &mut Vec<Bound>,
) {
    let max_length = pool.get_extension_by_name("civic.api.v1.max_length").expect("option");
    let max_items = pool.get_extension_by_name("civic.api.v1.max_items").expect("option");
    for field in message.fields() {
        let options = field.options();
        let get = |o| options.has_extension(o).then(|| options.get_extension(o).as_u32().unwrap_or(0));
        let (items, length) = (get(&max_items), get(&max_length));
        let mut path_steps = steps.to_vec();
        path_steps.push(field.clone());
        let path = format!("{prefix}{}", field.name());
        if items.is_some() {
            out.push(Bound { path: path.clone(), steps: path_steps.clone(), items, length: None, range: None });
        }
        if let Some(n) = length {
            let element = if field.is_list() { format!("{path}[0]") } else { path.clone() };
            out.push(Bound { path: element, steps: path_steps.clone(), items: None, length: Some(n), range: None });
        }
        if let Some(range) = range_of(&field, pool) {
            out.push(Bound {
                path: path.clone(),
                steps: path_steps.clone(),
                items: None,
                length: None,
                range: Some(range),
            });
        }
        if let Kind::Message(inner) = field.kind()
            && inner.full_name().starts_with("civic.")
        {
            let nested = if field.is_list() { format!("{path}[0].") } else { format!("{path}.") };
            bounds_of(&inner, pool, &nested, &path_steps, out);
        }
    }
}

/// The request with the bound's field one past it.
fn request_beyond(input: &MessageDescriptor, bound: &Bound, pool: &DescriptorPool) -> DynamicMessage {
    fn set(message: &mut DynamicMessage, steps: &[FieldDescriptor], bound: &Bound, pool: &DescriptorPool) {
        let field = &steps[0];
        if steps.len() == 1 {
            if let Some((low, high)) = bound.range {
                let beyond = if high.is_finite() { high + 1.0 } else { low - 1.0 };
                message.set_field(field, number(field, beyond));
                return;
            }
            let value = match (bound.items, bound.length, field.kind()) {
                (Some(n), _, Kind::Message(inner)) => {
                    Value::List(vec![Value::Message(within(inner, pool)); n as usize + 1])
                }
                (Some(n), _, Kind::String) => Value::List(vec![Value::String("x".into()); n as usize + 1]),
                (Some(n), _, kind) => Value::List(vec![Value::default_value(&kind); n as usize + 1]),
                (None, Some(n), Kind::Bytes) => Value::Bytes(vec![0u8; n as usize + 1].into()),
                (None, Some(n), _) => {
                    let text = Value::String("长".repeat(n as usize + 1));
                    if field.is_list() { Value::List(vec![text]) } else { text }
                }
                _ => unreachable!("a bound is on items or length"),
            };
            message.set_field(field, value);
            return;
        }
        let Kind::Message(inner) = field.kind() else { unreachable!("only messages hold fields") };
        let mut child = within(inner, pool);
        set(&mut child, &steps[1..], bound, pool);
        let value = if field.is_list() { Value::List(vec![Value::Message(child)]) } else { Value::Message(child) };
        message.set_field(field, value);
    }
    let mut message = within(input.clone(), pool);
    set(&mut message, &bound.steps, bound, pool);
    message
}

#[tokio::test]
async fn one_past_any_bound_of_any_request_is_invalid_argument_naming_the_field() {
    let (app, _store) = spawn_app().await;
    let pool = DescriptorPool::decode(civic_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut checked = 0;
    for service in pool.services().filter(|s| s.package_name().starts_with("civic.")) {
        for method in service.methods() {
            let mut bounds = Vec::new();
            bounds_of(&method.input(), &pool, "", &[], &mut bounds);
            assert!(
                !bounds.is_empty() || method.input().fields().len() == 0,
                "{}: nothing bounded",
                method.full_name()
            );
            for bound in &bounds {
                let body = request_beyond(&method.input(), bound, &pool).encode_to_vec();
                let path: http::uri::PathAndQuery =
                    format!("/{}/{}", service.full_name(), method.name()).parse().expect("path");
                let mut grpc = tonic::client::Grpc::new(app.channel.clone());
                grpc.ready().await.expect("ready");
                let status = if method.is_server_streaming() {
                    grpc.server_streaming(tonic::Request::new(body), path, Raw).await.err()
                } else {
                    grpc.unary(tonic::Request::new(body), path, Raw).await.err()
                };
                let status = status.unwrap_or_else(|| panic!("{} {}: accepted", method.full_name(), bound.path));
                assert_eq!(
                    status.code(),
                    tonic::Code::InvalidArgument,
                    "{} {}: {status:?}",
                    method.full_name(),
                    bound.path
                );
                let details = status.get_error_details();
                let fields: Vec<&str> = details
                    .bad_request()
                    .map(|b| b.field_violations.iter().map(|v| v.field.as_str()).collect())
                    .unwrap_or_default();
                assert_eq!(fields, [bound.path.as_str()], "{}", method.full_name());
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "every bounded field of every request: {checked}");
    app.stop().await;
}

#[tokio::test]
async fn a_query_of_megabytes_is_refused_at_once_while_other_calls_are_answered() {
    let store = common::Store::fresh().await;
    let app = common::spawn_on(&store, civic::Target::All, civic::Options { seed: true, ..Default::default() }).await;
    // 2.6 MB of words: under gRPC's 4 MiB message limit, far over the query's 256 characters.
    let query = "词 ".repeat(650_000);
    let mut searches = Vec::new();
    for _ in 0..8 {
        let mut client = CatalogueServiceClient::new(app.channel.clone());
        let query = query.clone();
        searches.push(tokio::spawn(async move {
            let request = SearchServiceItemsRequest { parent: "streets/zhongjie".into(), query, ..Default::default() };
            client.search_service_items(request).await.expect_err("refused").code()
        }));
    }
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    for _ in 0..50 {
        let err = client
            .get_service_item(GetServiceItemRequest { name: "streets/zhongjie/items/none".into() })
            .await
            .expect_err("no such item");
        assert_eq!(err.code(), tonic::Code::NotFound, "other calls are answered meanwhile");
    }
    for search in searches {
        let code =
            tokio::time::timeout(std::time::Duration::from_secs(60), search).await.expect("answered").expect("task");
        assert_eq!(code, tonic::Code::InvalidArgument);
    }
    // Past gRPC's own 4 MiB limit, the message is refused before it is even decoded.
    let over = SearchServiceItemsRequest {
        parent: "streets/zhongjie".into(),
        query: "词".repeat(1_500_000),
        ..Default::default()
    };
    let refused = client.search_service_items(over).await.expect_err("4.5 MB");
    assert!(
        matches!(
            refused.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument
        ),
        "{refused:?}"
    );

    // Within the bound, the words past the sixteenth are left out of the search: sixteen words
    // of one item's title find it, whatever follows them.
    let title =
        ["最低", "低生", "生活", "活保", "保障", "障申", "申请", "最低生", "低生活", "生活保", "活保障", "保障申"];
    let more = ["障申请", "最低生活", "生活保障", "保障申请"];
    let query =
        title.iter().chain(&more).copied().chain(["nowhere", "nothing", "nobody"]).collect::<Vec<_>>().join(" ");
    let request = SearchServiceItemsRequest { parent: "streets/zhongjie".into(), query, ..Default::default() };
    let found = client.search_service_items(request).await.expect("searched").into_inner();
    let titles: Vec<&str> = found.service_items.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(titles, ["最低生活保障申请"]);
    app.stop().await;
}
