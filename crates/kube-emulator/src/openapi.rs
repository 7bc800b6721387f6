//! The kinds' schemas in OpenAPI, as kube-apiserver publishes them for `kubectl explain` and
//! kubectl's client-side validation.
//!
//! - `/openapi/v3/<group-version>`: `components.schemas` holds every kind of the group-version
//!   and what it refers to, each kind marked with `x-kubernetes-group-version-kind` (a list of
//!   `{group, kind, version}`), by which `kubectl explain` finds it. A reference with a
//!   description beside it is wrapped in `allOf`, as OpenAPI 3.0 ignores siblings of `$ref`.
//! - `/openapi/v2`: one Swagger 2.0 document for all kinds (`definitions`), as protobuf
//!   (gnostic's `openapi.v2.Document`) when asked for it, as kubectl does. kubectl validates a
//!   `kind: List` on the client against it, item by item (the server cannot be asked to).
//!
//! Built-in kinds are described by k8s-openapi's schemas (generated from Kubernetes' own
//! OpenAPI, descriptions included); custom resources by their CRD's `openAPIV3Schema`, with
//! `apiVersion`, `kind` and `metadata` described as the apiextensions-apiserver adds them.

use crate::resources::{Registry, ResourceType};
use k8s_openapi::api::{apps, authentication, authorization, coordination, core, events, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::{generate::SchemaSettings, JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

const V3_REF_PREFIX: &str = "#/components/schemas/";
const V2_REF_PREFIX: &str = "#/definitions/";

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The schemas of one group-version's kinds and of everything they refer to, by name, in
/// OpenAPI v3 form.
pub fn schemas(reg: &Registry, group: &str, version: &str) -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for r in reg.in_group_version(group, version) {
        let name = match &r.crd {
            Some(_) => custom_schema(&mut generator, r),
            None => builtin_schema(&mut generator, r),
        };
        if let Some(name) = name {
            kinds.push((name, r));
        }
    }
    let mut schemas = generator.take_definitions(true);
    for (name, r) in kinds {
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": r.group, "kind": r.kind, "version": r.version}]),
            );
        }
    }
    schemas
}

/// The name kube-apiserver gives a custom resource's schema: the group reversed, then version
/// and kind (`dev.rotator.slack.v1alpha1.SlackToken`).
fn custom_name(r: &ResourceType) -> String {
    let mut parts: Vec<&str> = r.group.split('.').rev().collect();
    parts.push(&r.version);
    parts.push(&r.kind);
    parts.join(".")
}

/// A custom resource's schema, from its CRD, into the generator's definitions.
fn custom_schema(generator: &mut SchemaGenerator, r: &ResourceType) -> Option<String> {
    let raw = r.crd.as_ref()?.schema.as_ref()?.raw().clone();
    let mut schema = raw.as_object()?.clone();
    let metadata_ref = generator.subschema_for::<ObjectMeta>();
    let properties = schema.entry("properties").or_insert_with(|| json!({}));
    if let Some(properties) = properties.as_object_mut() {
        properties
            .insert("apiVersion".into(), json!({"type": "string", "description": API_VERSION_DESCRIPTION}));
        properties.insert("kind".into(), json!({"type": "string", "description": KIND_DESCRIPTION}));
        let mut metadata = metadata_ref.as_value().clone();
        if let Some(m) = metadata.as_object_mut() {
            m.insert("description".into(), json!(METADATA_DESCRIPTION));
        }
        properties.insert("metadata".into(), metadata);
    }
    let name = custom_name(r);
    generator.definitions_mut().insert(name.clone(), Value::Object(schema));
    Some(name)
}

/// A built-in kind's schema, from k8s-openapi, into the generator's definitions.
fn builtin_schema(generator: &mut SchemaGenerator, r: &ResourceType) -> Option<String> {
    fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<String> {
        generator.subschema_for::<T>();
        Some(T::schema_name().into_owned())
    }
    match (r.group.as_str(), r.kind.as_str()) {
        ("", "Namespace") => add::<core::v1::Namespace>(generator),
        ("", "Secret") => add::<core::v1::Secret>(generator),
        ("", "ConfigMap") => add::<core::v1::ConfigMap>(generator),
        ("", "Event") => add::<core::v1::Event>(generator),
        ("", "ServiceAccount") => add::<core::v1::ServiceAccount>(generator),
        ("events.k8s.io", "Event") => add::<events::v1::Event>(generator),
        ("coordination.k8s.io", "Lease") => add::<coordination::v1::Lease>(generator),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => add::<CustomResourceDefinition>(generator),
        ("rbac.authorization.k8s.io", "Role") => add::<rbac::v1::Role>(generator),
        ("rbac.authorization.k8s.io", "RoleBinding") => add::<rbac::v1::RoleBinding>(generator),
        ("rbac.authorization.k8s.io", "ClusterRole") => add::<rbac::v1::ClusterRole>(generator),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => add::<rbac::v1::ClusterRoleBinding>(generator),
        ("authentication.k8s.io", "SelfSubjectReview") => {
            add::<authentication::v1::SelfSubjectReview>(generator)
        }
        ("authorization.k8s.io", "SelfSubjectAccessReview") => {
            add::<authorization::v1::SelfSubjectAccessReview>(generator)
        }
        ("authorization.k8s.io", "SelfSubjectRulesReview") => {
            add::<authorization::v1::SelfSubjectRulesReview>(generator)
        }
        ("authorization.k8s.io", "SubjectAccessReview") => {
            add::<authorization::v1::SubjectAccessReview>(generator)
        }
        ("authorization.k8s.io", "LocalSubjectAccessReview") => {
            add::<authorization::v1::LocalSubjectAccessReview>(generator)
        }
        ("apps", "Deployment") => add::<apps::v1::Deployment>(generator),
        ("apps", "StatefulSet") => add::<apps::v1::StatefulSet>(generator),
        ("apps", "DaemonSet") => add::<apps::v1::DaemonSet>(generator),
        _ => None,
    }
}

/// The Swagger 2.0 form of every kind's schema: `definitions` refer to each other there, and
/// a reference carries its description beside it (2.0 has no `allOf` wrapping for that).
pub fn v2_definitions(reg: &Registry) -> Map<String, Value> {
    let mut definitions = Map::new();
    for (group, version) in reg.group_versions() {
        for (name, schema) in schemas(reg, &group, &version) {
            definitions.entry(name).or_insert_with(|| to_v2(schema));
        }
    }
    definitions
}

fn to_v2(schema: Value) -> Value {
    match schema {
        Value::Object(mut m) => {
            // `{allOf: [{$ref}], description}` → `{$ref, description}`
            if let Some(Value::Array(all_of)) = m.get("allOf") {
                if let [Value::Object(only)] = all_of.as_slice() {
                    if let Some(reference) = only.get("$ref").cloned() {
                        m.remove("allOf");
                        m.insert("$ref".into(), reference);
                    }
                }
            }
            m.remove("nullable");
            let m = m
                .into_iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        (k, Value::String(r.replacen(V3_REF_PREFIX, V2_REF_PREFIX, 1)))
                    }
                    // Field names and extension values are data, not schemas.
                    ("properties", Value::Object(props)) => {
                        (k, Value::Object(props.into_iter().map(|(p, s)| (p, to_v2(s))).collect()))
                    }
                    (key, v)
                        if key.starts_with("x-") || key == "enum" || key == "default" || key == "example" =>
                    {
                        (k, v)
                    }
                    (_, v) => (k, to_v2(v)),
                })
                .collect();
            Value::Object(m)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(to_v2).collect()),
        other => other,
    }
}

/// `/openapi/v2` as JSON.
pub fn v2_document(reg: &Registry) -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": {},
        "definitions": v2_definitions(reg),
    })
}

/// `/openapi/v2` as protobuf: gnostic's `openapi.v2.Document`, which client-go decodes.
pub fn v2_protobuf(reg: &Registry) -> Vec<u8> {
    use prost::Message;
    let definitions = v2_definitions(reg)
        .into_iter()
        .map(|(name, schema)| pb::NamedSchema { name, value: Some(pb::schema(&schema)) })
        .collect();
    let document = pb::Document {
        swagger: "2.0".into(),
        info: Some(pb::Info { title: "Kubernetes".into(), version: crate::discovery::GIT_VERSION.into() }),
        paths: Some(pb::Paths::default()),
        definitions: Some(pb::Definitions { additional_properties: definitions }),
    };
    document.encode_to_vec()
}

/// The part of gnostic's `OpenAPIv2.proto` (package `openapi.v2`) that carries schemas, with its
/// field numbers. Fields not listed are never set.
mod pb {
    use serde_json::Value;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Paths {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    /// gnostic's `Any`: the value as YAML text (JSON is YAML).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    /// A oneof on the wire: exactly one of the two is set.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdditionalPropertiesItem {
        #[prost(message, optional, boxed, tag = "1")]
        pub schema: Option<Box<Schema>>,
        #[prost(bool, optional, tag = "2")]
        pub boolean: Option<bool>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Properties {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        #[prost(string, tag = "1")]
        pub r#ref: String,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "3")]
        pub title: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(message, optional, tag = "5")]
        pub default: Option<Any>,
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        pub r#enum: Vec<Any>,
        #[prost(message, optional, tag = "21")]
        pub additional_properties: Option<AdditionalPropertiesItem>,
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        #[prost(message, repeated, tag = "24")]
        pub all_of: Vec<Schema>,
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    fn text(v: &Value, key: &str) -> String {
        v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
    }

    fn any(v: &Value) -> Any {
        Any { yaml: v.to_string() }
    }

    /// A Swagger 2.0 schema (JSON) as gnostic's message.
    pub fn schema(v: &Value) -> Schema {
        let list = |key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        Schema {
            r#ref: text(v, "$ref"),
            format: text(v, "format"),
            title: text(v, "title"),
            description: text(v, "description"),
            default: v.get("default").map(any),
            required: list("required").iter().filter_map(|s| s.as_str().map(str::to_owned)).collect(),
            r#enum: list("enum").iter().map(any).collect(),
            additional_properties: match v.get("additionalProperties") {
                Some(Value::Bool(b)) => Some(AdditionalPropertiesItem { schema: None, boolean: Some(*b) }),
                Some(s @ Value::Object(_)) => {
                    Some(AdditionalPropertiesItem { schema: Some(Box::new(schema(s))), boolean: None })
                }
                _ => None,
            },
            r#type: match v.get("type") {
                Some(Value::String(t)) => Some(TypeItem { value: vec![t.clone()] }),
                Some(Value::Array(ts)) => Some(TypeItem {
                    value: ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
                }),
                _ => None,
            },
            items: match v.get("items") {
                Some(Value::Array(items)) => Some(ItemsItem { schema: items.iter().map(schema).collect() }),
                Some(item @ Value::Object(_)) => Some(ItemsItem { schema: vec![schema(item)] }),
                _ => None,
            },
            all_of: list("allOf").iter().map(schema).collect(),
            properties: v.get("properties").and_then(Value::as_object).map(|props| Properties {
                additional_properties: props
                    .iter()
                    .map(|(name, s)| NamedSchema { name: name.clone(), value: Some(schema(s)) })
                    .collect(),
            }),
            vendor_extension: v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.starts_with("x-"))
                .map(|(k, v)| NamedAny { name: k.clone(), value: Some(any(v)) })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_carry_their_gvk_and_descriptions() {
        let reg = Registry::default();
        let core = schemas(&reg, "", "v1");
        let secret = &core["io.k8s.api.core.v1.Secret"];
        assert_eq!(
            secret["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Secret", "version": "v1"}])
        );
        assert!(secret["description"].as_str().unwrap().starts_with("Secret holds secret data"));
        // A reference with a description is wrapped in allOf, as kube-apiserver publishes it.
        let metadata = &secret["properties"]["metadata"];
        assert_eq!(
            metadata["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(
            core.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "what it refers to is there"
        );
        for r in reg.all() {
            let kind_schemas = schemas(&reg, &r.group, &r.version);
            let found = kind_schemas.values().any(|s| {
                s["x-kubernetes-group-version-kind"][0]
                    == json!({"group": r.group, "kind": r.kind, "version": r.version})
            });
            assert!(found, "{}/{} {} has a schema", r.group, r.version, r.kind);
        }
    }

    #[test]
    fn the_v2_document_refers_to_definitions_and_decodes_as_gnostic_protobuf() {
        let reg = Registry::default();
        let definitions = v2_definitions(&reg);
        let metadata = &definitions["io.k8s.api.core.v1.Secret"]["properties"]["metadata"];
        assert_eq!(metadata["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
        assert!(metadata.get("allOf").is_none(), "{metadata}");

        use prost::Message;
        let bytes = v2_protobuf(&reg);
        let doc = pb::Document::decode(bytes.as_slice()).unwrap();
        assert_eq!(doc.swagger, "2.0");
        let defs = doc.definitions.unwrap().additional_properties;
        let secret =
            defs.iter().find(|d| d.name == "io.k8s.api.core.v1.Secret").unwrap().value.clone().unwrap();
        let gvk =
            secret.vendor_extension.iter().find(|e| e.name == "x-kubernetes-group-version-kind").unwrap();
        let gvk: Value = serde_json::from_str(&gvk.value.as_ref().unwrap().yaml).unwrap();
        assert_eq!(gvk, json!([{"group": "", "kind": "Secret", "version": "v1"}]));
        assert_eq!(secret.r#type.unwrap().value, vec!["object".to_owned()]);
    }
}
