//! The OpenAPI 3.1 document of the HTTP/JSON API, generated from the same routes the gateway
//! serves and from the descriptors' comments — nothing about the API is written twice.
//!
//! - **Paths.** An OpenAPI path parameter cannot span `/`, while a `google.api.http` variable
//!   such as `{name=streets/*/items/*}` does. Each `*` of a variable becomes a parameter named
//!   after the collection before it (`/v1/streets/{street}/items/{item}`), so a generic client
//!   can call every path as written; the variable's field and resource pattern are told in the
//!   operation's description.
//! - **Parameters.** Request fields bound neither to the path nor to the body are query
//!   parameters, by their JSON names, nested message fields with dots (`page.size`); only
//!   fields the gateway can read from text (scalars, enums, their lists, `FieldMask`).
//! - **Bodies.** `body: "*"` takes the request message less the fields the path carries;
//!   `body: "field"` that field's schema.
//! - **Schemas** follow the canonical proto3 JSON mapping: lowerCamelCase names, 64-bit integers
//!   as strings, enums by name, bytes in base64, the well-known types as their JSON forms.
//!   `OUTPUT_ONLY` fields are `readOnly`; comments become descriptions. `REQUIRED` is not made
//!   `required`: the path may carry the field, an update with a mask sends only what changes,
//!   and answers leave out fields at their defaults.
//! - **Server streams** are described by the message each line (NDJSON) or event (SSE) holds.
//! - **Constraints** are those the server enforces: path ids match the resource id pattern,
//!   strings and lists carry the `maxLength`/`maxItems` of their `(civic.api.v1.max_length)` /
//!   `(max_items)` bounds, numbers the `minimum`/`maximum` of their `(civic.api.v1.minimum)` /
//!   `(maximum)` ranges, `pageSize` is never negative; page tokens (`format: page-token`) are
//!   only ever what a previous answer returned, and filters (`format: filter`) follow AIP-160 as
//!   the field's description says.
//! - **Errors** are `google.rpc.Status`, for every operation.

use std::collections::BTreeMap;

use prost_reflect::{DescriptorPool, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, Value as Field};
use serde_json::{Map, Value, json};

use crate::{BodyRule, Route};

/// `google.api.FieldBehavior.REQUIRED`.
const REQUIRED: i32 = 2;
/// `google.api.FieldBehavior.OUTPUT_ONLY`.
const OUTPUT_ONLY: i32 = 3;

/// A resource id (AIP-122): a lowercase letter, then lowercase letters, digits or hyphens, not
/// ending in a hyphen, at most 63 in all.
/// The resource type of civic's users, who live at the identity provider, and the form of their
/// names: `users/` and the token's subject (no `/`, whitespace or control characters).
const USER_TYPE: &str = "civic.local/User";
const USER_PATTERN: &str = "^users/[^/\\s\\u0000-\\u001F\\u007F]{1,256}$";
const ID_PATTERN: &str = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$";

/// A month segment, `YYYY-MM` (`streets/{street}/months/{month}`).
const MONTH_PATTERN: &str = "^[0-9]{4}-(0[1-9]|1[0-2])$";
/// A segment that is a user's subject rather than a resource id (a review is named by its
/// worker: `…/reviews/{user}`).
const SUBJECT_PATTERN: &str = "^[^/\\s\\u0000-\\u001F\\u007F]{1,256}$";

/// The schema of a path parameter named after its collection: a resource id, but for the
/// segments that are not ids — a month, a worker's subject.
fn segment(parameter: &str) -> Value {
    match parameter {
        "month" => json!({"type": "string", "pattern": MONTH_PATTERN, "maxLength": 7}),
        "review" => json!({"type": "string", "pattern": SUBJECT_PATTERN, "maxLength": 256}),
        _ => json!({"type": "string", "pattern": ID_PATTERN, "maxLength": 63}),
    }
}

/// The document for `routes`.
pub(crate) fn document(routes: &[Route], pool: &DescriptorPool) -> Value {
    let mut schemas = Schemas { pool: pool.clone(), done: BTreeMap::new() };
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut tags = BTreeMap::new();
    for route in routes {
        let rpc = &route.rpc;
        let service = rpc.parent_service();
        tags.entry(service.name().to_owned())
            .or_insert_with(|| comments(&service.parent_file(), service.path()).unwrap_or_default());
        let (path, params, variables) = route.template.openapi_path();
        let base = format!("{}_{}", service.name(), rpc.name());
        let seen = ids.entry(base.clone()).or_default();
        *seen += 1;
        let operation_id = if *seen == 1 { base } else { format!("{base}_{seen}") };

        let mut parameters: Vec<Value> =
            params.iter().map(|p| json!({"name": p, "in": "path", "required": true, "schema": segment(p)})).collect();
        let bound: Vec<&str> = variables.iter().map(|(field, _)| field.split('.').next().unwrap_or(field)).collect();
        let input = rpc.input();
        let mut request_body = None;
        match &route.body {
            BodyRule::Whole => {
                // Fields the path carries are not asked for again in the body (the path wins).
                let carried: Vec<&str> =
                    variables.iter().map(|(field, _)| field.as_str()).filter(|f| !f.contains('.')).collect();
                let schema =
                    if carried.is_empty() { schemas.reference(&input) } else { schemas.without(&input, &carried) };
                request_body = Some(json!({
                    "required": true,
                    "content": {"application/json": {"schema": schema}},
                }));
            }
            BodyRule::Field(name) => {
                if let Some(field) = input.get_field_by_name(name) {
                    let mut schema = schemas.field(&field);
                    if let Some(text) = comments(&field.parent_file(), field.path()) {
                        describe(&mut schema, text);
                    }
                    request_body = Some(json!({"required": true, "content": {"application/json": {"schema": schema}}}));
                }
                for field in input.fields().filter(|f| f.name() != name && !bound.contains(&f.name())) {
                    query_parameters(&mut schemas, &field, "", &mut parameters, 0, false);
                }
            }
            BodyRule::None => {
                for field in input.fields().filter(|f| !bound.contains(&f.name())) {
                    query_parameters(&mut schemas, &field, "", &mut parameters, 0, false);
                }
            }
        }

        let text = comments(&rpc.parent_file(), rpc.path()).unwrap_or_default();
        // The first sentence of the first paragraph (comments wrap mid-sentence).
        let paragraph = text.split("\n\n").next().unwrap_or_default().replace('\n', " ");
        let summary = match paragraph.find(". ") {
            Some(end) => paragraph[..=end].to_owned(),
            None => paragraph,
        };
        let mut description = text.clone();
        for (field, pattern) in &variables {
            description.push_str(&format!("\n\nThe path carries `{field}`, of the form `{pattern}`."));
        }
        let success = if rpc.output().full_name() == crate::HTTP_BODY {
            json!({
                "description": "A file, as its media type says (a CSV file is `text/csv`).",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            })
        } else if rpc.is_server_streaming() {
            let output = schemas.reference(&rpc.output());
            json!({
                "description": "A stream: one message per line (`application/x-ndjson`), or one per event \
                    (`text/event-stream`, when asked for with `Accept`). An error after the start ends the \
                    stream with `{\"error\": google.rpc.Status}`.",
                "content": {
                    "application/x-ndjson": {"schema": output},
                    "text/event-stream": {"schema": output},
                },
            })
        } else {
            let output = schemas.reference(&rpc.output());
            json!({"description": "The answer.", "content": {"application/json": {"schema": output}}})
        };
        let status = schemas.reference_by_name("google.rpc.Status");
        let mut operation = json!({
            "operationId": operation_id,
            "tags": [service.name()],
            "summary": summary,
            "description": description.trim(),
            "parameters": parameters,
            "responses": {
                "200": success,
                "default": {
                    "description": "An error: the HTTP status of its gRPC code, and the status with its details.",
                    "content": {"application/json": {"schema": status}},
                },
            },
        });
        if let Some(body) = request_body {
            operation["requestBody"] = body;
        }
        paths.entry(path).or_default().insert(route.method.as_str().to_ascii_lowercase(), operation);
    }
    let tags: Vec<Value> =
        tags.into_iter().map(|(name, description)| json!({"name": name, "description": description})).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "civic",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP/JSON API of civic: a city street office's service catalogue and reception \
                desk. Every operation is also a gRPC method (the same address serves gRPC and gRPC-Web). \
                Reading published items needs no token; other calls take `Authorization: Bearer <token>`.",
        },
        "servers": [{"url": "/"}],
        "tags": tags,
        "security": [{}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas.done,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    })
}

/// Adds the query parameters of `field` (recursing into messages, at most a few levels). Only
/// what the gateway reads from text is a parameter: scalars, enums, lists of them and
/// `FieldMask`; a map, a list of messages or another well-known type is not. `in_required` says
/// that `field` is inside a message the method cannot do without (a required `point`: its
/// `point.latitude` and `point.longitude` are then required parameters).
fn query_parameters(
    schemas: &mut Schemas,
    field: &FieldDescriptor,
    prefix: &str,
    out: &mut Vec<Value>,
    depth: usize,
    in_required: bool,
) {
    let is_required = schemas.behaviors(field).contains(&REQUIRED);
    let name = format!("{prefix}{}", field.json_name());
    if field.is_map() {
        return;
    }
    if let Kind::Message(message) = field.kind()
        && message.full_name() != "google.protobuf.FieldMask"
    {
        if !field.is_list() && well_known(message.full_name()).is_none() && depth < 3 {
            let required = is_required && (depth == 0 || in_required);
            for inner in message.fields() {
                query_parameters(schemas, &inner, &format!("{name}."), out, depth + 1, required);
            }
        }
        return;
    }
    let mut parameter = json!({"name": name, "in": "query", "schema": schemas.field(field)});
    if let Some(text) = comments(&field.parent_file(), field.path()) {
        parameter["description"] = Value::String(text);
    }
    // A parameter the method cannot do without (REQUIRED at top level, or a field of a required
    // message) is required.
    if (depth == 0 && is_required) || in_required {
        parameter["required"] = Value::Bool(true);
        if field.kind() == Kind::String && !field.is_list() {
            parameter["schema"]["minLength"] = Value::from(1);
        }
    }
    if field.name() == "query" && field.kind() == Kind::String {
        // A search needs a word: a letter, a digit or a Chinese character.
        parameter["schema"]["pattern"] = Value::from("[0-9A-Za-z\\u4E00-\\u9FFF]");
    }
    if field.is_list() {
        parameter["explode"] = Value::Bool(true);
    }
    out.push(parameter);
}

/// The schemas of messages and enums, made once each, by full name.
struct Schemas {
    pool: DescriptorPool,
    done: BTreeMap<String, Value>,
}

impl Schemas {
    fn reference(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(schema) = well_known(message.full_name()) {
            return schema;
        }
        let name = message.full_name().to_owned();
        if !self.done.contains_key(&name) {
            // Placed first, so a message that contains itself refers to itself.
            self.done.insert(name.clone(), Value::Null);
            let schema = self.message(message);
            self.done.insert(name.clone(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    fn reference_by_name(&mut self, name: &str) -> Value {
        match self.pool.get_message_by_name(name) {
            Some(message) => self.reference(&message),
            None => json!({"type": "object"}),
        }
    }

    /// The schema of `message` less the fields named (by proto name) in `skip`, in place.
    fn without(&mut self, message: &MessageDescriptor, skip: &[&str]) -> Value {
        if well_known(message.full_name()).is_some() {
            return self.reference(message);
        }
        let mut schema = self.message(message);
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            for field in message.fields().filter(|f| skip.contains(&f.name())) {
                properties.remove(field.json_name());
            }
        }
        schema
    }

    /// The `google.api.field_behavior` values of `field`.
    fn behaviors(&self, field: &FieldDescriptor) -> Vec<i32> {
        match self.pool.get_extension_by_name("google.api.field_behavior") {
            Some(ext) if field.options().has_extension(&ext) => match field.options().get_extension(&ext).as_ref() {
                Field::List(values) => values.iter().filter_map(Field::as_enum_number).collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn message(&mut self, message: &MessageDescriptor) -> Value {
        let mut properties = Map::new();
        for field in message.fields() {
            let mut schema = self.field(&field);
            if let Some(text) = comments(&field.parent_file(), field.path()) {
                describe(&mut schema, text);
            }
            let behaviors = self.behaviors(&field);
            if behaviors.contains(&OUTPUT_ONLY) {
                schema["readOnly"] = Value::Bool(true);
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = json!({"type": "object", "properties": properties});
        if let Some(text) = comments(&message.parent_file(), message.path()) {
            schema["description"] = Value::String(text);
        }
        schema
    }

    /// A field's schema, repeated and map fields included, with the bounds the server enforces.
    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map()
            && let Kind::Message(entry) = field.kind()
            && let Some(value) = entry.get_field_by_name("value")
        {
            return json!({"type": "object", "additionalProperties": self.single(&value)});
        }
        let mut single = self.single(field);
        if let Some(n) = self.bound(field, "civic.api.v1.max_length") {
            single["maxLength"] = Value::from(n);
        }
        for (option, key) in [("civic.api.v1.minimum", "minimum"), ("civic.api.v1.maximum", "maximum")] {
            if let Some(limit) = self.limit(field, option) {
                single[key] = if limit.fract() == 0.0 && limit.abs() < 9e15 {
                    Value::from(limit as i64)
                } else {
                    Value::from(limit)
                };
            }
        }
        if self.references_user(field) {
            single["format"] = Value::from("user-name");
            single["pattern"] = Value::from(USER_PATTERN);
        } else if field.kind() == Kind::String
            && let Some(pattern) = self.referenced_pattern(field)
        {
            // A reference to a civic resource: its name pattern, as a regular expression and as
            // the template (`x-resource-pattern`) clients fill in.
            let id = ID_PATTERN.trim_start_matches('^').trim_end_matches('$');
            let regex: Vec<String> = pattern
                .split('/')
                .map(|segment| if segment.starts_with('{') { id.to_owned() } else { segment.to_owned() })
                .collect();
            single["format"] = Value::from("resource-name");
            single["pattern"] = Value::from(format!("^{}$", regex.join("/")));
            single["x-resource-pattern"] = Value::from(pattern);
        }
        match field.name() {
            "page_size" => {
                single["minimum"] = Value::from(0);
                single["maximum"] = Value::from(i32::MAX);
            }
            "page_token" => single["format"] = Value::from("page-token"),
            // Printable characters only (a UUID is best).
            "request_id" => single["pattern"] = Value::from("^[^\\u0000-\\u001F\\u007F]*$"),
            "filter" => single["format"] = Value::from("filter"),
            _ => {}
        }
        if field.is_list() {
            let mut list = json!({"type": "array", "items": single});
            if let Some(n) = self.bound(field, "civic.api.v1.max_items") {
                list["maxItems"] = Value::from(n);
            }
            list
        } else {
            single
        }
    }

    /// The value of the bound `option` (`civic.api.v1.max_length`) on `field`, when it has one.
    fn bound(&self, field: &FieldDescriptor, option: &str) -> Option<u64> {
        let extension = self.pool.get_extension_by_name(option)?;
        let options = field.options();
        options.has_extension(&extension).then(|| options.get_extension(&extension).as_u32()).flatten().map(u64::from)
    }

    /// Whether `field` names a user (`(google.api.resource_reference) = {type:
    /// "civic.local/User"}`): `users/{user}`, the user's id at the identity provider.
    fn references_user(&self, field: &FieldDescriptor) -> bool {
        self.reference_type(field).as_deref() == Some(USER_TYPE)
    }

    /// The resource type `field` refers to (`(google.api.resource_reference)`), if any.
    fn reference_type(&self, field: &FieldDescriptor) -> Option<String> {
        let extension = self.pool.get_extension_by_name("google.api.resource_reference")?;
        let options = field.options();
        if !options.has_extension(&extension) {
            return None;
        }
        let reference = options.get_extension(&extension);
        reference.as_message().and_then(|m| m.get_field_by_name("type")).and_then(|t| t.as_str().map(str::to_owned))
    }

    /// The name pattern of the civic resource `field` refers to
    /// (`streets/{street}/communities/{community}`), from the resource's `(google.api.resource)`.
    fn referenced_pattern(&self, field: &FieldDescriptor) -> Option<String> {
        let wanted = self.reference_type(field)?;
        let extension = self.pool.get_extension_by_name("google.api.resource")?;
        self.pool.all_messages().find_map(|message| {
            let options = message.options();
            if !options.has_extension(&extension) {
                return None;
            }
            let resource = options.get_extension(&extension);
            let resource = resource.as_message()?;
            let kind = resource.get_field_by_name("type")?;
            if kind.as_str() != Some(wanted.as_str()) {
                return None;
            }
            let patterns = resource.get_field_by_name("pattern")?;
            patterns.as_list()?.first()?.as_str().map(str::to_owned)
        })
    }

    /// The value of the range `option` (`civic.api.v1.minimum`) on `field`, when it has one.
    fn limit(&self, field: &FieldDescriptor, option: &str) -> Option<f64> {
        let extension = self.pool.get_extension_by_name(option)?;
        let options = field.options();
        options.has_extension(&extension).then(|| options.get_extension(&extension).as_f64()).flatten()
    }

    /// The schema of one value of `field`'s type.
    fn single(&mut self, field: &FieldDescriptor) -> Value {
        match field.kind() {
            Kind::Double => json!({"type": "number", "format": "double"}),
            Kind::Float => json!({"type": "number", "format": "float"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({"type": "integer", "format": "int32"}),
            Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int64", "minimum": 0}),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Message(message) => self.reference(&message),
            Kind::Enum(e) => {
                let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
                let mut schema = json!({"type": "string", "enum": names});
                let mut text = comments(&e.parent_file(), e.path()).unwrap_or_default();
                for value in e.values() {
                    if let Some(about) = comments(&value.parent_file(), value.path()) {
                        text.push_str(&format!("\n- `{}`: {}", value.name(), about.replace('\n', " ")));
                    }
                }
                if !text.trim().is_empty() {
                    schema["description"] = Value::String(text.trim().to_owned());
                }
                schema
            }
        }
    }
}

/// Sets a field's comment as `schema`'s description, before what its type already says (an
/// enum's values).
fn describe(schema: &mut Value, text: String) {
    let text = match schema.get("description").and_then(Value::as_str) {
        Some(about) => format!("{text}\n\n{about}"),
        None => text,
    };
    schema["description"] = Value::String(text);
}

/// The JSON form of a well-known type, which is not an object of its fields.
fn well_known(name: &str) -> Option<Value> {
    Some(match name {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}),
        "google.protobuf.FieldMask" => {
            json!({"type": "string", "description": "Field paths, comma-separated, in lowerCamelCase."})
        }
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array"}),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": {"@type": {"type": "string"}},
            "required": ["@type"],
            "additionalProperties": true,
        }),
        "google.protobuf.StringValue" => json!({"type": ["string", "null"]}),
        "google.protobuf.BytesValue" => json!({"type": ["string", "null"], "contentEncoding": "base64"}),
        "google.protobuf.BoolValue" => json!({"type": ["boolean", "null"]}),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => json!({"type": ["number", "null"]}),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => json!({"type": ["integer", "null"]}),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => json!({"type": ["string", "null"]}),
        _ => return None,
    })
}

/// The leading comments of the element at `path` in `file`, tidied: one line per source line,
/// trimmed; `None` when there are none.
fn comments(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}
