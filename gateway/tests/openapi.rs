//! The OpenAPI document: valid against the OpenAPI 3.1 schema (and every Schema Object against
//! JSON Schema 2020-12), complete — every route an operation — made from the protos, and
//! describing the JSON the gateway really sends and takes.

use serde_json::{Value, json};

fn document() -> Value {
    civic_gateway::Gateway::new(civic_proto::FILE_DESCRIPTOR_SET).expect("routes").openapi()
}

/// The OpenAPI Initiative's schema of 3.1 documents (tests/fixtures/README.md says where from).
fn oas_schema() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(include_str!("fixtures/openapi-3.1-schema.json")).expect("the OpenAPI 3.1 schema");
    assert_eq!(schema["$id"], "https://spec.openapis.org/oas/3.1/schema/2022-10-07", "the pinned schema");
    jsonschema::draft202012::new(&schema).expect("the schema compiles")
}

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// A validator of one of the document's component schemas, its references to the others
/// resolved, and every message object closed (`additionalProperties: false`), so a JSON name the
/// schema does not know fails too.
fn component(doc: &Value, name: &str) -> jsonschema::Validator {
    let text = serde_json::to_string(&doc["components"]["schemas"])
        .expect("JSON")
        .replace("#/components/schemas/", "#/$defs/");
    let mut defs: Value = serde_json::from_str(&text).expect("JSON");
    for schema in defs.as_object_mut().expect("schemas").values_mut() {
        if let Some(object) = schema.as_object_mut()
            && object.contains_key("properties")
            && !object.contains_key("additionalProperties")
        {
            object.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": defs,
        "$ref": format!("#/$defs/{name}"),
    });
    jsonschema::draft202012::new(&schema).expect("the component schemas compile")
}

/// `message` in the JSON the gateway writes: decoded through the descriptors and serialised
/// by prost-reflect with the gateway's options.
fn gateway_json(message: &impl prost::Message, name: &str) -> Value {
    let pool = prost_reflect::DescriptorPool::decode(civic_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let desc = pool.get_message_by_name(name).expect("the message");
    let bytes = prost::Message::encode_to_vec(message);
    let dynamic = prost_reflect::DynamicMessage::decode(desc, bytes.as_slice()).expect("decodes");
    let options = prost_reflect::SerializeOptions::new().skip_default_fields(true);
    dynamic.serialize_with_options(serde_json::value::Serializer, &options).expect("serialises")
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let doc = document();
    let validator = oas_schema();
    let found = errors(&validator, &doc);
    assert!(found.is_empty(), "{found:#?}");
    // The OpenAPI schema leaves Schema Objects open; each must be valid JSON Schema 2020-12.
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        assert!(jsonschema::meta::is_valid(schema), "{name} is not a valid JSON Schema: {schema}");
    }
}

#[test]
fn the_validator_catches_a_broken_document() {
    let validator = oas_schema();
    let mut doc = document();
    doc["paths"] = Value::from(5);
    assert!(!errors(&validator, &doc).is_empty(), "paths must be an object");
    let mut doc = document();
    doc.as_object_mut().expect("object").remove("openapi");
    assert!(!errors(&validator, &doc).is_empty(), "openapi is required");
    // Deep in the document: a parameter's schema must be a schema (reached through $dynamicRef).
    let mut doc = document();
    doc["paths"]["/v1/streets/{street}/items/{item}"]["get"]["parameters"][0]["schema"] = Value::from(5);
    assert!(!errors(&validator, &doc).is_empty(), "a parameter schema must be an object or a boolean");
    // A path parameter must be required.
    let mut doc = document();
    doc["paths"]["/v1/streets/{street}/items/{item}"]["get"]["parameters"][0]["required"] = Value::Bool(false);
    assert!(!errors(&validator, &doc).is_empty(), "a path parameter must be required");
}

#[test]
fn every_route_is_an_operation_with_its_schemas_and_comments() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    let operations: Vec<(&String, &String, &Value)> = paths
        .iter()
        .flat_map(|(path, item)| item.as_object().expect("item").iter().map(move |(m, op)| (path, m, op)))
        .collect();
    let pool = prost_reflect::DescriptorPool::decode(civic_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let rpcs: usize =
        pool.services().filter(|s| s.package_name().starts_with("civic.")).map(|s| s.methods().len()).sum();
    assert_eq!(operations.len(), rpcs, "one operation per HTTP rule, one rule per RPC");
    let mut ids: Vec<&str> = operations.iter().map(|(_, _, op)| op["operationId"].as_str().expect("id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), rpcs, "operation ids are unique");
    // Every `{parameter}` of a path is a required path parameter of each of its operations.
    for (path, method, op) in &operations {
        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        let in_path: Vec<&str> =
            path.split('{').skip(1).map(|rest| rest.split('}').next().expect("a closing brace")).collect();
        assert_eq!(declared, in_path, "{method} {path}");
    }

    let get = &doc["paths"]["/v1/streets/{street}/items/{item}"]["get"];
    assert_eq!(get["operationId"], "CatalogueService_GetServiceItem");
    assert_eq!(
        get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/civic.catalogue.v1.ServiceItem"
    );
    assert_eq!(
        get["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/google.rpc.Status"
    );
    let names: Vec<&str> =
        get["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["street", "item"]);
    // A whole-message body leaves out what the path carries.
    let publish = &doc["paths"]["/v1/streets/{street}/items/{item}:publish"]["post"];
    let body = &publish["requestBody"]["content"]["application/json"]["schema"]["properties"];
    assert!(body["etag"].is_object() && body.get("name").is_none(), "{body}");
    let list = &doc["paths"]["/v1/streets/{street}/items"]["get"];
    let query: Vec<&str> =
        list["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(query.contains(&"pageSize") && query.contains(&"filter"), "{query:?}");
    let create = &doc["paths"]["/v1/streets/{street}/items"]["post"];
    let query: Vec<&str> =
        create["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(query.contains(&"serviceItemId") && query.contains(&"requestId"), "{query:?}");
    let watch = &doc["paths"]["/v1/streets/{street}/items:watch"]["get"]["responses"]["200"]["content"];
    assert!(watch["application/x-ndjson"].is_object() && watch["text/event-stream"].is_object());

    let item = &doc["components"]["schemas"]["civic.catalogue.v1.ServiceItem"];
    assert_eq!(item["properties"]["createTime"]["type"], "string");
    assert_eq!(item["properties"]["createTime"]["format"], "date-time");
    assert_eq!(item["properties"]["createTime"]["readOnly"], true);
    assert_eq!(item["properties"]["revision"]["type"], "string", "int64 is a string in JSON");
    let categories = item["properties"]["category"]["enum"].as_array().expect("enum names");
    assert!(categories.iter().any(|c| c == "CULTURE"));
    assert!(item["properties"]["materials"]["items"]["$ref"].as_str().is_some_and(|r| r.ends_with("Material")));
    // Descriptions come from the protos' comments.
    assert_eq!(
        item["properties"]["promisedDays"]["description"],
        "The time the street promises, in working days (0 means done on the spot)."
    );
    assert!(
        item["properties"]["category"]["description"].as_str().is_some_and(|d| d.contains("Culture (文化服务).")),
        "enum value comments are listed: {}",
        item["properties"]["category"]
    );
    assert!(get["summary"].as_str().is_some_and(|s| !s.is_empty()), "{get}");
    assert!(doc["components"]["schemas"]["google.rpc.Status"].is_object());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[test]
fn the_schemas_describe_the_json_the_gateway_writes_and_takes() {
    use civic_proto::catalogue::{Material, ServiceItem, Step, material, service_item};
    let doc = document();
    let validator = component(&doc, "civic.catalogue.v1.ServiceItem");
    // Every field set, as the gateway would answer it.
    let mut item = ServiceItem {
        name: "streets/zhongjie/items/di-bao".into(),
        title: "低保申请".into(),
        title_en: "Subsistence allowance".into(),
        category: service_item::Category::DailyLife as i32,
        handling_mode: service_item::HandlingMode::OnBehalf as i32,
        summary: "s".into(),
        eligibility: "e".into(),
        materials: vec![Material {
            name: "户口簿".into(),
            form: material::Form::Original as i32,
            copies: 1,
            required: true,
            note: "n".into(),
        }],
        steps: vec![Step { title: "受理".into(), actor: "a".into(), time_limit_days: 1, description: "d".into() }],
        promised_days: 5,
        legal_days: 20,
        fee_fen: 1_000_000_000_000,
        location: "l".into(),
        department: "d".into(),
        opening_hours: "o".into(),
        visits_required: 1,
        keywords: vec!["k".into()],
        state: service_item::State::Published as i32,
        revision: 3,
        etag: "e".into(),
        ..Default::default()
    };
    for time in [&mut item.create_time, &mut item.update_time, &mut item.publish_time] {
        let time = time.get_or_insert_with(Default::default);
        time.seconds = 1_795_000_000;
        time.nanos = 500_000_000;
    }
    let answer = gateway_json(&item, "civic.catalogue.v1.ServiceItem");
    assert_eq!(answer["feeFen"], "1000000000000", "{answer}");
    assert!(answer["createTime"].is_string(), "{answer}");
    let found = errors(&validator, &answer);
    assert!(found.is_empty(), "{answer}\n{found:#?}");

    // A partial body (an update with a mask) is valid: REQUIRED is not `required`.
    assert!(validator.is_valid(&json!({"summary": "x"})));
    // The wrong JSON types and names are not.
    assert!(!validator.is_valid(&json!({"feeFen": 5})), "int64 is a string");
    assert!(!validator.is_valid(&json!({"category": "NO_SUCH_CATEGORY"})));
    assert!(!validator.is_valid(&json!({"fee_fen": "5"})), "fields go by their JSON names");
    assert!(!validator.is_valid(&json!({"materials": [{"name": 3}]})));

    let status = component(&doc, "google.rpc.Status");
    let error = json!({
        "code": 5,
        "message": "no such item",
        "details": [{"@type": "type.googleapis.com/google.rpc.ResourceInfo", "resourceName": "x"}],
    });
    assert!(status.is_valid(&error), "{:#?}", errors(&status, &error));
    assert!(!status.is_valid(&json!({"code": 5, "details": [{"reason": "no @type"}]})));
}
