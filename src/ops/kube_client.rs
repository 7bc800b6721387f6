//! The Kubernetes client: kube's, built the way kube's own builder builds it, but with a bound on
//! the connections it keeps idle.
//!
//! kube talks HTTP/1.1 to the API server, one request per connection at a time, so a start-up
//! burst of reconciles opens one connection each. kube's builder keeps every one of them in its
//! pool for good (its idle timeout needs a timer kube does not give the pool): measured with
//! 10,000 SlackTokens, 105 sockets stayed open 100 s after the burst, with their buffers (and,
//! on a real cluster, a TLS session each and the API server's side of them). Here at most
//! [`IDLE_CONNECTIONS`] stay, and those close once idle for [`IDLE_TIMEOUT`] (the pool looks once
//! per timeout, so between one and two timeouts after their last request).
//!
//! Everything else follows `kube_client::client::builder`: kube's TLS connector, its connect,
//! read and write timeouts, its retry of 429/503/504, the base URI, auth and extra headers
//! (`--as` impersonation) layers. A kubeconfig with a proxy gets kube's own builder, which knows
//! proxies. Left out: kube's debug-level HTTP span per request.

use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as HttpClient},
    rt::{TokioExecutor, TokioTimer},
};
use kube::client::{retry::RetryPolicy, ConfigExt};
use std::time::Duration;
use tower::{retry::RetryLayer, BoxError, ServiceBuilder};

/// Connections to the API server kept open while idle: a few, for the next rotations' requests.
pub const IDLE_CONNECTIONS: usize = 8;
/// How long an idle connection is kept (kube's and Go's default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The User-Agent of the operator's requests, as client-go writes its own (`binary/version`).
/// The API server names the field manager of a write that gives none after it, up to the first
/// `/`: without it, the operator's status, label and finalizer patches and its Events would be
/// recorded under an empty manager in `managedFields`.
pub const USER_AGENT: &str = concat!("slack-token-operator/", env!("CARGO_PKG_VERSION"));

/// A client for the API server `config` names.
pub fn connect(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    if !config.headers.iter().any(|(name, _)| name == http::header::USER_AGENT) {
        config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(USER_AGENT)));
    }
    if config.proxy_url.is_some() {
        return kube::Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let pool = HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(IDLE_CONNECTIONS)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| RetryLayer::new(RetryPolicy::server_retry())))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(pool);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// A client for the API server of the kubeconfig (or in-cluster configuration) kube infers, as
/// `kube::Client::try_default` finds it.
pub async fn infer() -> Result<kube::Client, kube::Error> {
    connect(kube::Config::infer().await.map_err(kube::Error::InferConfig)?)
}
