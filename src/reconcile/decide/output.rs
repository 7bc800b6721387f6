//! Whether this SlackToken may write the output Secret.

use crate::{error::Invalid, resource::SlackToken, secrets::output_is_ours};
use k8s_openapi::api::core::v1::Secret;

/// Why this SlackToken may not write the output Secret `output` (as read), if it may not: it
/// exists and is someone else's. Judged before Slack is called, from the snapshot; and by act on
/// the Secret read again when it changed after our last write (see `act::publish`).
pub fn output_conflict(stk: &SlackToken, output: Option<&Secret>) -> Option<Invalid> {
    output
        .filter(|existing| !output_is_ours(stk, existing))
        .map(|_| Invalid::OutputSecretConflict { name: stk.spec.secret_ref.name.clone() })
}
