//! The log formats, built here so that tests read exactly what the operator writes.

use tracing_subscriber::{
    fmt::{
        format::{Format, Json, JsonFields},
        MakeWriter, SubscriberBuilder,
    },
    EnvFilter,
};

/// JSON lines for log collectors. The formatter writes each event's message under the key
/// `message`, next to the event's own fields: so no field of ours may be called `message`, or
/// the line carries that key twice (and collectors keep one of the two at random).
pub fn json<W>(filter: EnvFilter, writer: W) -> SubscriberBuilder<JsonFields, Format<Json>, EnvFilter, W>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).json()
}
