//! Reading StreamJob manifests and checking them as the apiserver would.
//!
//! `kubectl apply` rejects a bad manifest through the CRD's schema and its CEL rules;
//! `strom run` has no apiserver, so it checks the same things here: the structure
//! (required fields, enum values, types; unknown fields, like kubectl's strict field
//! validation) through the Rust types, and the CEL rules by evaluating the very
//! `x-kubernetes-validations` of the generated CRD. Messages name the field the way
//! the apiserver does (`spec.kafkaClusters[1].authentication.type: Unsupported value:
//! "kerberos"`), so a user sees the same complaint locally and on a cluster.

use std::fmt;
use std::sync::LazyLock;

use kube::core::cel::{CompiledSchema, ErrorKind, Validator, compile_schema};
use serde::Deserialize;
use serde_json::Value;

use crate::StreamJob;
use crate::crd::stream_job_crd;
use crate::stream_job::{FILE_STORAGE_ON_VOLUME, STORAGE_REQUIRED};

/// The `apiVersion` of a StreamJob manifest.
pub const API_VERSION: &str = "strom.dev/v1alpha1";
/// The `kind` of a StreamJob manifest.
pub const KIND: &str = "StreamJob";

/// Why a manifest could not be read as a valid StreamJob.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML (or JSON).
    #[error("the manifest is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),

    /// The text holds no document of kind StreamJob.
    #[error("the manifest holds no {KIND} (apiVersion {API_VERSION})")]
    NoStreamJob,

    /// The text holds more than one StreamJob where one was expected.
    #[error("the manifest holds {0} StreamJobs; expected one")]
    SeveralStreamJobs(usize),

    /// The StreamJob breaks the schema or its rules.
    #[error("{}", Invalid { name, violations })]
    Invalid {
        /// `metadata.name` of the job, if it has one.
        name: String,
        /// Every problem found, in the order found.
        violations: Vec<Violation>,
    },
}

/// Renders an invalid StreamJob the way kubectl reports an apiserver rejection.
struct Invalid<'a> {
    name: &'a str,
    violations: &'a [Violation],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KIND} \"{}\" is invalid:", self.name)?;
        for violation in self.violations {
            write!(f, "\n  - {violation}")?;
        }
        Ok(())
    }
}

impl ManifestError {
    /// The individual problems, for an invalid StreamJob; empty otherwise.
    pub fn violations(&self) -> &[Violation] {
        match self {
            Self::Invalid { violations, .. } => violations,
            _ => &[],
        }
    }
}

/// One problem with one field of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field, as the apiserver writes it: `spec.kafkaClusters[0].name`;
    /// empty for the whole object.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Reads every document of a (multi-document) YAML or JSON text. Empty documents
/// are skipped, as kubectl does.
pub fn read_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Whether a document is a StreamJob by its `apiVersion` and `kind`.
pub fn is_stream_job(document: &Value) -> bool {
    document.get("kind").and_then(Value::as_str) == Some(KIND)
        && document.get("apiVersion").and_then(Value::as_str) == Some(API_VERSION)
}

/// Where a StreamJob is to run, for the rules that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On Kubernetes, by the operator: every rule of the CRD.
    Kubernetes,
    /// In one process here (`strom run`): state may stay on this machine's disk,
    /// so the rules that make it outlive pods ([`KUBERNETES_ONLY_RULES`]) are not
    /// checked.
    Local,
}

/// Messages of the CRD's rules that only a job on Kubernetes must meet.
pub const KUBERNETES_ONLY_RULES: [&str; 2] = [STORAGE_REQUIRED, FILE_STORAGE_ON_VOLUME];

/// Reads the one StreamJob of a manifest text (other documents, such as the Secrets
/// it references, are left alone) and checks it as `kubectl apply` would.
pub fn parse_stream_job(text: &str) -> Result<StreamJob, ManifestError> {
    parse_stream_job_for(text, Placement::Kubernetes)
}

/// Reads the one StreamJob of a manifest text and checks it for `placement`.
pub fn parse_stream_job_for(text: &str, placement: Placement) -> Result<StreamJob, ManifestError> {
    let mut jobs: Vec<Value> = read_documents(text)?
        .into_iter()
        .filter(is_stream_job)
        .collect();
    match jobs.len() {
        0 => Err(ManifestError::NoStreamJob),
        1 => check(jobs.remove(0), None, placement),
        n => Err(ManifestError::SeveralStreamJobs(n)),
    }
}

/// Checks one StreamJob document as the apiserver would on create, and returns it
/// typed, with every default filled in.
pub fn stream_job_from_value(document: Value) -> Result<StreamJob, ManifestError> {
    check(document, None, Placement::Kubernetes)
}

/// Checks a change to a StreamJob as the apiserver would on update: everything
/// [`stream_job_from_value`] checks, plus the transition rules (fields that may not
/// change, such as `maxParallelism`).
pub fn check_update(old: &StreamJob, new: Value) -> Result<StreamJob, ManifestError> {
    let old = serde_json::to_value(old)
        .unwrap_or_else(|e| unreachable!("a StreamJob always serializes: {e}"));
    check(new, Some(&old), Placement::Kubernetes)
}

fn check(
    document: Value,
    old: Option<&Value>,
    placement: Placement,
) -> Result<StreamJob, ManifestError> {
    let name = document
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut violations = header_violations(&document);
    let typed = deserialize_strictly(&document, &mut violations);
    size_violations(&SCHEMA, &document, "", &mut violations);
    let structure_ok = typed.is_some();
    for violation in cel_violations(&document, old, structure_ok) {
        if placement == Placement::Local
            && KUBERNETES_ONLY_RULES.contains(&violation.message.as_str())
        {
            continue;
        }
        // Some rules are checked by both the types and CEL; say each once.
        violations.retain(|v| !v.message.ends_with(&violation.message));
        violations.push(violation);
    }
    match typed {
        Some(job) if violations.is_empty() => Ok(job),
        _ => Err(ManifestError::Invalid { name, violations }),
    }
}

/// `apiVersion`, `kind` and `metadata.name`, which the apiserver checks before the
/// schema.
fn header_violations(document: &Value) -> Vec<Violation> {
    let mut violations = Vec::new();
    let field = |path: &str| document.pointer(path).and_then(Value::as_str);
    if field("/apiVersion") != Some(API_VERSION) {
        violations.push(Violation {
            field: "apiVersion".into(),
            message: format!("Unsupported value: must be {API_VERSION}"),
        });
    }
    if field("/kind") != Some(KIND) {
        violations.push(Violation {
            field: "kind".into(),
            message: format!("Unsupported value: must be {KIND}"),
        });
    }
    if field("/metadata/name").is_none_or(str::is_empty) {
        violations.push(Violation {
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    }
    violations
}

/// Deserializes into the Rust types, recording unknown fields and the first
/// structural error (serde stops there) as violations.
fn deserialize_strictly(document: &Value, violations: &mut Vec<Violation>) -> Option<StreamJob> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| {
        let field = ignored_field_path(&path);
        // The header is the apiserver's to check (see `header_violations`).
        if field != "apiVersion" && field != "kind" {
            unknown.push(field);
        }
    };
    let ignoring = serde_ignored::Deserializer::new(document, &mut record);
    let result: Result<StreamJob, _> = serde_path_to_error::deserialize(ignoring);
    violations.extend(unknown.into_iter().map(|field| Violation {
        message: format!("unknown field \"{field}\""),
        field: String::new(),
    }));
    match result {
        Ok(job) => Some(job),
        Err(error) => {
            violations.push(structural_violation(document, &error));
            None
        }
    }
}

/// Turns serde's complaint into the apiserver's words for the same problem.
fn structural_violation(
    document: &Value,
    error: &serde_path_to_error::Error<serde_json::Error>,
) -> Violation {
    let path = error_field_path(error.path());
    let message = error.inner().to_string();
    if let Some(missing) = between(&message, "missing field `", "`") {
        return Violation {
            field: join(&path, missing),
            message: "Required value".into(),
        };
    }
    if let Some(variant) = between(&message, "unknown variant `", "`") {
        // serde lists "one of `a`, `b`"; the apiserver writes "a", "b".
        let supported = message
            .split_once("expected one of ")
            .map(|(_, rest)| rest.replace('`', "\""));
        // An internally tagged enum fails at its object; the value is in `type`.
        let tagged = lookup(document, &path)
            .and_then(|object| object.get("type"))
            .and_then(Value::as_str)
            == Some(variant);
        return Violation {
            field: if tagged { join(&path, "type") } else { path },
            message: match supported {
                Some(supported) => {
                    format!("Unsupported value: \"{variant}\": supported values: {supported}")
                }
                None => format!("Unsupported value: \"{variant}\""),
            },
        };
    }
    if let Some((found, expected)) = invalid_type(&message) {
        return Violation {
            field: path,
            message: format!("Invalid value: {found}: must be of type {expected}"),
        };
    }
    Violation {
        field: path,
        message: format!("Invalid value: {message}"),
    }
}

/// Reads serde's "invalid type: string \"four\", expected i32" as
/// (`string "four"`, `integer`), naming the expected type as the OpenAPI schema does.
fn invalid_type(message: &str) -> Option<(&str, &'static str)> {
    let rest = message.strip_prefix("invalid type: ")?;
    let (found, expected) = rest.split_once(", expected ")?;
    let expected = match expected.split_whitespace().next()? {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" => "integer",
        "f32" | "f64" => "number",
        "a" if expected.contains("boolean") => "boolean",
        "a" if expected.contains("string") => "string",
        "a" if expected.contains("sequence") => "array",
        "a" if expected.contains("map") => "object",
        "struct" => "object",
        _ => return None,
    };
    Some((found, expected))
}

/// The StreamJob CRD's openAPIV3Schema, as JSON.
static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let crd = stream_job_crd();
    crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(serde_json::to_value)
        .and_then(Result::ok)
        .unwrap_or_else(|| unreachable!("the generated CRD has an openAPIV3Schema"))
});

/// The schema with its CEL rules compiled once.
static COMPILED_SCHEMA: LazyLock<CompiledSchema> = LazyLock::new(|| compile_schema(&SCHEMA));

/// The CRD's CEL rules as compiled client-side: a test checks that each compiles.
pub fn compiled_schema() -> &'static CompiledSchema {
    &COMPILED_SCHEMA
}

/// Evaluates the CRD's `x-kubernetes-validations`. When the structure is broken, only
/// rules that evaluated to false are kept: errors from evaluating rules against
/// ill-typed values would repeat the structural complaint less clearly.
fn cel_violations(document: &Value, old: Option<&Value>, structure_ok: bool) -> Vec<Violation> {
    let Err(errors) = Validator::new().validate_compiled(compiled_schema(), document, old) else {
        return Vec::new();
    };
    errors
        .into_vec()
        .into_iter()
        .filter(|e| structure_ok || e.kind == ErrorKind::ValidationFailure)
        .map(|e| Violation {
            field: e.field_path,
            message: e.message,
        })
        .collect()
}

/// The schema's size limits (`maxLength`, `maxItems`, `maxProperties`), which the
/// Rust types do not carry, in the apiserver's words.
fn size_violations(schema: &Value, value: &Value, path: &str, violations: &mut Vec<Violation>) {
    let limit = |keyword: &str| schema.get(keyword).and_then(Value::as_u64);
    let mut check = |size: usize, keyword: &str| {
        if let Some(max) = limit(keyword).filter(|&max| size as u64 > max) {
            let message = if keyword == "maxLength" {
                format!("Too long: may not be more than {max} bytes")
            } else {
                format!("Too many: {size}: must have at most {max} items")
            };
            violations.push(Violation {
                field: path.to_owned(),
                message,
            });
        }
    };
    match value {
        Value::String(text) => check(text.len(), "maxLength"),
        Value::Array(items) => {
            check(items.len(), "maxItems");
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    size_violations(item_schema, item, &format!("{path}[{i}]"), violations);
                }
            }
        }
        Value::Object(fields) => {
            check(fields.len(), "maxProperties");
            for (key, field) in fields {
                let field_schema = schema
                    .get("properties")
                    .and_then(|properties| properties.get(key))
                    .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                if let Some(field_schema) = field_schema {
                    size_violations(field_schema, field, &join(path, key), violations);
                }
            }
        }
        _ => {}
    }
}

/// `spec.kafkaClusters[0].name` from serde_path_to_error's path.
fn error_field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out = join(&out, key),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// `spec.kafkaClusters[0].name` from serde_ignored's path.
fn ignored_field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_field_path(parent)),
        Path::Map { parent, key } => join(&ignored_field_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_field_path(parent),
    }
}

/// The value at a field path made by [`error_field_path`].
fn lookup<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = document;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indices) = part.split_once('[').unwrap_or((part, ""));
        value = value.get(key)?;
        for index in indices.split('[') {
            if let Some(index) = index.strip_suffix(']') {
                value = value.get(index.parse::<usize>().ok()?)?;
            }
        }
    }
    Some(value)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The text between the first `start` and the next `end` in `text`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let (_, rest) = text.split_once(start)?;
    rest.split_once(end).map(|(inside, _)| inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_follows_keys_and_indices() {
        let doc = json!({"spec": {"kafkaClusters": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            lookup(&doc, "spec.kafkaClusters[1].name"),
            Some(&json!("b"))
        );
        assert_eq!(lookup(&doc, "spec.kafkaClusters[2]"), None);
    }

    #[test]
    fn invalid_types_are_named_as_in_the_schema() {
        assert_eq!(
            invalid_type("invalid type: string \"four\", expected i32"),
            Some(("string \"four\"", "integer"))
        );
        assert_eq!(
            invalid_type("invalid type: integer `3`, expected a string"),
            Some(("integer `3`", "string"))
        );
        assert_eq!(
            invalid_type("invalid type: string \"x\", expected struct PipelineSpec"),
            Some(("string \"x\"", "object"))
        );
        assert_eq!(invalid_type("missing field `x`"), None);
    }

    #[test]
    fn between_finds_the_quoted_name() {
        assert_eq!(
            between("missing field `password` at line 3", "missing field `", "`"),
            Some("password")
        );
        assert_eq!(between("something else", "missing field `", "`"), None);
    }

    #[test]
    fn every_cel_rule_compiles_client_side() {
        let errors = compiled_schema().compilation_errors();
        assert!(
            errors.is_empty(),
            "CEL rules that do not compile: {errors:?}"
        );
    }
}
