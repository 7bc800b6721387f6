//! Lists: selectors, pagination with continue tokens, and resourceVersion semantics.

use super::{ListOpts, State};
use crate::error::{ApiError, ApiResult};
use crate::resources::{to_served, ResourceType};
use crate::selector::LabelSelector;
use crate::store::Key;
use base64::Engine;
use serde_json::{json, Value};

impl State {
    /// Resolves the snapshot a list reads from: (objects, RV reported in the list).
    fn list_source(&self, rt: &ResourceType, o: &ListOpts) -> ApiResult<ListSource> {
        let current = self.store.current_rv();
        let too_large = |rv: u64| {
            let mut e = ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {rv}, current: {current}"),
            );
            e.details = Some(
                json!({"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1}),
            );
            e
        };
        if let Some(token) = &o.continue_token {
            let (rv, start) = decode_continue(token)?;
            if rv < self.store.compacted_rv() {
                return Err(ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."));
            }
            let snap = self.store.snapshot_at(&rt.storage, rv);
            return Ok((Some(snap.into_iter().collect()), rv, Some(start)));
        }
        let rv: Option<u64> = match o.resource_version.as_deref() {
            None | Some("") => None,
            Some(s) => {
                Some(s.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?)
            }
        };
        match (o.resource_version_match.as_deref(), rv) {
            (Some(m), None) if !m.is_empty() => Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )),
            (Some("Exact"), Some(rv)) => {
                if rv > current {
                    return Err(too_large(rv));
                }
                if rv < self.store.compacted_rv() {
                    return Err(ApiError::gone(format!(
                        "The resourceVersion for the provided list is too old. ({rv})"
                    )));
                }
                let snap = self.store.snapshot_at(&rt.storage, rv);
                Ok((Some(snap.into_iter().collect()), rv, None))
            }
            (Some(m), Some(_)) if m != "NotOlderThan" && m != "Exact" => {
                Err(ApiError::bad_request(format!("resourceVersionMatch: Unsupported value: \"{m}\"")))
            }
            (_, Some(rv)) if rv > current => Err(too_large(rv)),
            _ => Ok((None, current, None)),
        }
    }

    pub fn list(&self, rt: &ResourceType, ns: Option<&str>, o: &ListOpts) -> ApiResult<Value> {
        let (snapshot, rv, start) = self.list_source(rt, o)?;
        let objects: Box<dyn Iterator<Item = (&Key, &Value)>> = match &snapshot {
            Some(snap) => Box::new(snap.iter().map(|(k, v)| (k, v))),
            None => Box::new(self.store.objects(&rt.storage)),
        };
        // Selectors are matched on the stored form (labels are the same in every
        // representation; field labels use the storage's names), copying only matches.
        let selected: Vec<(Key, Value)> = objects
            .filter(|(k, _)| ns.is_none_or(|n| k.0 == n))
            .filter(|(k, _)| start.as_ref().is_none_or(|s| *k > s))
            .filter(|(_, v)| o.labels.matches(v) && o.fields.as_ref().is_none_or(|f| f.matches(v)))
            .map(|(k, v)| (k.clone(), to_served(rt, v.clone())))
            .collect();
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        let items: Vec<Value> = match o.limit.filter(|l| *l > 0) {
            Some(limit) if selected.len() > limit => {
                let last = selected[limit - 1].0.clone();
                meta["continue"] = json!(encode_continue(rv, &last));
                let filtered = !o.labels.eq(&LabelSelector::default()) || o.fields.is_some();
                if !filtered {
                    meta["remainingItemCount"] = json!(selected.len() - limit);
                }
                selected.into_iter().take(limit).map(|(_, v)| v).collect()
            }
            _ => selected.into_iter().map(|(_, v)| v).collect(),
        };
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": rt.list_kind(),
            "metadata": meta,
            "items": items,
        }))
    }
}

/// Objects a list reads, the RV it reports, and the key to continue after.
/// `None` objects means "the current state" (read in place, without copying the store).
type ListSource = (Option<Vec<(Key, Value)>>, u64, Option<Key>);

fn encode_continue(rv: u64, key: &Key) -> String {
    let raw = json!({"rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(u64, Key)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let ns = v["ns"].as_str().ok_or_else(bad)?.to_string();
    let name = v["name"].as_str().ok_or_else(bad)?.to_string();
    Ok((rv, (ns, name)))
}
