//! The OpenAPI document: valid against the OpenAPI 3.1 schema (and every Schema Object against
//! JSON Schema 2020-12), complete — every route an operation — and made from the protos.

use serde_json::Value;

fn document() -> Value {
    civic_gateway::Gateway::new(civic_proto::FILE_DESCRIPTOR_SET).expect("routes").openapi()
}

fn oas_schema() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(include_str!("fixtures/openapi-3.1-schema.json")).expect("the OpenAPI 3.1 schema");
    jsonschema::draft202012::new(&schema).expect("the schema compiles")
}

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect()
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
}

#[test]
fn every_route_is_an_operation_with_its_schemas_and_comments() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    let operations: Vec<(&String, &String, &Value)> = paths
        .iter()
        .flat_map(|(path, item)| item.as_object().expect("item").iter().map(move |(m, op)| (path, m, op)))
        .collect();
    assert_eq!(operations.len(), 23, "one operation per HTTP rule");
    let mut ids: Vec<&str> = operations.iter().map(|(_, _, op)| op["operationId"].as_str().expect("id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 23, "operation ids are unique");

    let get = &doc["paths"]["/v1/streets/{street}/items/{item}"]["get"];
    assert_eq!(get["operationId"], "CatalogueService_GetServiceItem");
    assert_eq!(
        get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/civic.catalogue.v1.ServiceItem"
    );
    let names: Vec<&str> =
        get["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["street", "item"]);
    assert!(doc["paths"]["/v1/streets/{street}/items/{item}:publish"]["post"]["requestBody"].is_object());
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
    assert!(get["summary"].as_str().is_some_and(|s| !s.is_empty()), "{get}");
    assert!(doc["components"]["schemas"]["google.rpc.Status"].is_object());
}
