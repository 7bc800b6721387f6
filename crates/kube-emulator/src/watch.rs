//! Watch streams: newline-delimited JSON watch events over a chunked HTTP response.
//!
//! Semantics follow the real server: no resourceVersion (or "0") starts with synthetic
//! ADDED events for the current state; a resourceVersion resumes after it; one older
//! than the kept history yields a single ERROR event carrying a 410 Expired Status
//! (HTTP 200, as the real server does once the stream has started); label/field
//! selectors turn MODIFIED into ADDED/DELETED when an object enters/leaves the selection.

use crate::error::ApiError;
use crate::resources::{to_served, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType};
use crate::verbs::State;
use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often BOOKMARK events are sent when the client allows them (the real watch cache
/// sends them roughly once a minute).
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// The real server picks a random timeout in [minRequestTimeout, 2*minRequestTimeout]
/// (30..60 min by default) when the client gives none; we use the lower bound.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Clone, Default)]
pub struct WatchParams {
    pub namespace: Option<String>,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Option<Duration>,
    pub labels: LabelSelector,
    pub fields: Option<FieldSelector>,
    /// Objects are sent as meta.k8s.io/v1 PartialObjectMetadata.
    pub metadata_only: bool,
    /// Objects are sent as one-row meta.k8s.io/v1 Tables (`kubectl get -w`):
    /// (clock for ages, includeObject).
    pub table: Option<(crate::NowFn, String)>,
}

impl WatchParams {
    fn selects(&self, ns: &str, obj: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns)
            && self.labels.matches(obj)
            && self.fields.as_ref().is_none_or(|f| f.matches(obj))
    }
}

fn event_line(rt: &ResourceType, p: &WatchParams, etype: &str, object: Value) -> Bytes {
    if let Some((now, include)) = &p.table {
        let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
        return line(etype, crate::table::render(rt, &[object], meta, now(), include));
    }
    if p.metadata_only {
        line(etype, crate::routes::partial_metadata(&object))
    } else {
        line(etype, object)
    }
}

fn line(etype: &str, object: Value) -> Bytes {
    let mut s = json!({ "type": etype, "object": object }).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    line("BOOKMARK", json!({ "kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta }))
}

/// Turns a stored event into what this watcher sees, if anything.
fn transform(rt: &ResourceType, p: &WatchParams, ev: &Event) -> Option<Bytes> {
    let ns = ev.key.0.as_str();
    let obj = to_served(rt, ev.object.clone());
    let now = p.selects(ns, &obj);
    match ev.etype {
        EventType::Added => now.then(|| event_line(rt, p, "ADDED", obj)),
        EventType::Deleted => now.then(|| event_line(rt, p, "DELETED", obj)),
        EventType::Modified => {
            let before = ev.old.as_ref().is_some_and(|o| p.selects(ns, &to_served(rt, o.clone())));
            match (before, now) {
                (true, true) => Some(event_line(rt, p, "MODIFIED", obj)),
                (false, true) => Some(event_line(rt, p, "ADDED", obj)),
                (true, false) => Some(event_line(rt, p, "DELETED", obj)),
                (false, false) => None,
            }
        }
    }
}

/// Starts a watch. Errors that the real server reports before streaming (bad parameters)
/// come back as `Err`; everything else, including 410, is in the stream.
pub fn start(state: Arc<Mutex<State>>, rt: ResourceType, p: WatchParams) -> Result<Response, ApiError> {
    let from: Option<u64> = match p.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(s) => {
            Some(s.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?)
        }
    };
    let initial_state = from.is_none() || p.send_initial_events;
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(256);
    let mut first: Vec<Bytes> = Vec::new();
    let subscription = {
        let mut st = state.lock().map_err(|_| ApiError::internal("state lock poisoned"))?;
        match from {
            Some(rv) if !p.send_initial_events && rv < st.store.compacted_rv() => {
                let err =
                    ApiError::gone(format!("too old resource version: {rv} ({})", st.store.compacted_rv()));
                first.push(line("ERROR", err.to_status()));
                None
            }
            _ => {
                if initial_state {
                    for (key, obj) in st.store.objects(&rt.storage) {
                        let obj = to_served(&rt, obj.clone());
                        if p.selects(&key.0, &obj) {
                            first.push(event_line(&rt, &p, "ADDED", obj));
                        }
                    }
                    if p.send_initial_events {
                        first.push(bookmark(&rt, st.store.current_rv(), true));
                    }
                }
                let replay_from = if initial_state { None } else { from };
                let (id, replay, rx) = st.store.subscribe(&rt.storage, replay_from);
                first.extend(replay.iter().filter_map(|ev| transform(&rt, &p, ev)));
                Some((id, rx))
            }
        }
    };
    let timeout = p.timeout.unwrap_or(DEFAULT_TIMEOUT);
    tokio::spawn(async move {
        for chunk in first {
            if out_tx.send(chunk).await.is_err() {
                break;
            }
        }
        let Some((id, mut rx)) = subscription else {
            return;
        };
        let deadline = Instant::now() + timeout;
        let mut next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
        loop {
            tokio::select! {
                biased;
                ev = rx.recv() => match ev {
                    Some(ev) => {
                        if let Some(chunk) = transform(&rt, &p, &ev) {
                            if out_tx.send(chunk).await.is_err() {
                                break;
                            }
                        }
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::time::sleep_until(next_bookmark), if p.bookmarks => {
                    next_bookmark += BOOKMARK_INTERVAL;
                    // Drain under the lock so the bookmark's RV covers exactly what was sent.
                    let (rv, pending) = {
                        let Ok(_st) = state.lock() else { break };
                        let rv = _st.store.current_rv();
                        let mut pending = Vec::new();
                        while let Ok(ev) = rx.try_recv() {
                            pending.push(ev);
                        }
                        (rv, pending)
                    };
                    let mut chunks: Vec<Bytes> = pending.iter().filter_map(|ev| transform(&rt, &p, ev)).collect();
                    chunks.push(bookmark(&rt, rv, false));
                    let mut closed = false;
                    for c in chunks {
                        if out_tx.send(c).await.is_err() {
                            closed = true;
                            break;
                        }
                    }
                    if closed {
                        break;
                    }
                }
                _ = out_tx.closed() => break,
            }
        }
        if let Ok(mut st) = state.lock() {
            st.store.unsubscribe(id);
        }
    });
    let stream = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}
