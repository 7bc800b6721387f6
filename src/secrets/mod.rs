//! The two Secrets of a SlackToken: the credentials Secret (the user's; where rotation state
//! lives and the only durable copy of the refresh token) and the output Secret (the operator's;
//! what applications mount), plus the pairs Slack issued that are not saved yet, in memory and
//! in the crash journal.

mod credentials;
mod journal;
mod output;
mod pending;
mod replay;
mod store;
mod written;

pub use credentials::{
    chain_token, hand_over_problem, legacy_token_problem, oauth_secret, refresh_token_problem, set_expiry,
    set_issued_at, Credentials, ACCESS_TOKEN, LEGACY_TOKEN, PENDING_TOKEN, REFRESH_TOKEN,
};
pub use journal::{fingerprint, Entry, Journal};
pub use output::{is_ours as output_is_ours, publish, publish_known, shape as output_shape};
pub use pending::PendingPairs;
pub use replay::{replay, Replayed};
pub use store::{save_pair, update as update_credentials, Saved};
pub use written::{KnownOutput, OwnWrites, Seen};
