//! API errors rendered as `metav1.Status` bodies, with the codes and reasons the
//! real API server uses so that clients' error handling (kube-rs `ErrorResponse`,
//! kubectl messages, `apierrors.IsConflict` etc.) behaves the same here.

use serde_json::{json, Value};

/// One `details.causes[]` entry of a 422 Invalid status.
#[derive(Debug, Clone)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// `secrets` for core, `foos.example.com` for grouped resources, as in the real messages.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

fn details(group: &str, plural: &str, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": plural });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None }
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self {
            details: Some(details(group, plural, name)),
            ..Self::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(group, plural)))
        }
    }

    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self {
            details: Some(details(group, plural, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(group, plural)),
            )
        }
    }

    /// The optimistic-concurrency conflict every controller must handle.
    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self {
            details: Some(details(group, plural, name)),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {} \"{name}\": {why}", qualified(group, plural)),
            )
        }
    }

    pub fn stale(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 422 with per-field causes; `kind` is the object's Kind as the real message shows it.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        // ErrorList.ToAggregate: a message already said is not said again (the causes keep all).
        let mut summary: Vec<String> = Vec::new();
        for c in &causes {
            if !summary.contains(&c.message) {
                summary.push(c.message.clone());
            }
        }
        let summary =
            if summary.len() == 1 { summary[0].clone() } else { format!("[{}]", summary.join(", ")) };
        let mut d = json!({
            "name": name,
            "kind": kind,
            // As apimachinery's NewInvalid: the cause's message is the error body, without
            // the field path (which is in `field`).
            "causes": causes.iter().map(|c| json!({
                "reason": c.reason,
                "message": c.message.strip_prefix(&format!("{}: ", c.field)).unwrap_or(&c.message),
                "field": c.field,
            })).collect::<Vec<_>>(),
        });
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        Self {
            details: Some(d),
            ..Self::new(422, "Invalid", format!("{qualified_kind} \"{name}\" is invalid: {summary}"))
        }
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Builds a `field: Invalid value: ...` cause the way apimachinery's field.Error renders it.
pub fn invalid_value(field: &str, value: &Value, detail: &str) -> Cause {
    let shown = match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    Cause {
        reason: "FieldValueInvalid",
        field: field.to_string(),
        message: format!("{field}: Invalid value: {shown}: {detail}"),
    }
}

pub fn required_value(field: &str, detail: &str) -> Cause {
    let message = if detail.is_empty() {
        format!("{field}: Required value")
    } else {
        format!("{field}: Required value: {detail}")
    };
    Cause { reason: "FieldValueRequired", field: field.to_string(), message }
}

pub fn forbidden_field(field: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueForbidden",
        field: field.to_string(),
        message: format!("{field}: Forbidden: {detail}"),
    }
}
