//! placeholder
pub(crate) fn document(_routes: &[crate::Route], _pool: &prost_reflect::DescriptorPool) -> serde_json::Value {
    serde_json::json!({})
}
