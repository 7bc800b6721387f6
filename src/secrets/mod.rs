//! The two Secrets of a SlackToken: the credentials Secret (the user's; where rotation state
//! lives and the only durable copy of the refresh token) and the output Secret (the operator's;
//! what applications mount), plus the pairs Slack issued that are not saved yet.

mod credentials;
mod output;
mod pending;
mod store;

pub use credentials::{oauth_secret, set_issued_at, Credentials, ACCESS_TOKEN, PENDING_TOKEN, REFRESH_TOKEN};
pub use output::{is_ours as output_is_ours, publish};
pub use pending::PendingPairs;
pub use store::{save_issued, update as update_credentials};
