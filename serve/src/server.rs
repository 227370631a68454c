//! Starting and stopping the service: load the TorchScript module, run it once on zeros of the
//! declared input (a model that cannot take that input fails here, not on the first request),
//! bind (refusing a non-loopback address without a token), serve until SIGTERM or Ctrl-C,
//! then finish the requests in flight and stop the inference thread.

use crate::auth::Token;
use crate::batcher::{BatchConfig, Batcher};
use crate::codec::first_line;
use crate::http::{router, App};
use crate::metrics::Metrics;
use crate::spec::ModelSpec;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tch::{CModule, Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{path}: not a TorchScript file libtorch can load: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path}: the model fails on an input of {input}: {message}")]
    WarmUp { path: PathBuf, input: String, message: String },
    #[error(
        "refusing to serve on {address}, which is not a loopback address, without a bearer token: \
         pass --token-file FILE or --token-env NAME (or --host 127.0.0.1)"
    )]
    NoToken { address: SocketAddr },
    #[error("{host}:{port}: {message}")]
    Bind { host: String, port: u16, message: String },
}

pub struct ServeConfig {
    pub model: PathBuf,
    pub spec: ModelSpec,
    pub host: String,
    pub port: u16,
    pub max_batch: i64,
    pub max_delay: Duration,
    pub max_body_bytes: usize,
    pub token: Option<Token>,
    pub device: Device,
}

/// Loads `config.model` and checks it runs on the declared input (three runs, which also lets
/// TorchScript's profiling executor optimise the graph before the first request).
pub fn load(config: &ServeConfig) -> Result<CModule, StartError> {
    let mut module = CModule::load_on_device(&config.model, config.device)
        .map_err(|e| StartError::Load { path: config.model.clone(), message: first_line(&e.to_string()) })?;
    module.set_eval();
    let mut dims = vec![config.spec.fixed_batch.unwrap_or(1)];
    dims.extend_from_slice(&config.spec.input_shape);
    let zeros = Tensor::zeros(dims.as_slice(), (config.spec.input_kind, config.device));
    for _ in 0..3 {
        tch::no_grad(|| module.forward_ts(&[&zeros])).map(|_| ()).map_err(|e| StartError::WarmUp {
            path: config.model.clone(),
            input: config.spec.describe_input(),
            message: first_line(&e.to_string()),
        })?;
    }
    Ok(module)
}

/// Binds the listening socket; a non-loopback address needs a token.
pub async fn bind(config: &ServeConfig) -> Result<tokio::net::TcpListener, StartError> {
    let bind_error = |message: String| StartError::Bind { host: config.host.clone(), port: config.port, message };
    let addresses: Vec<SocketAddr> =
        tokio::net::lookup_host((config.host.as_str(), config.port)).await.map_err(|e| bind_error(e.to_string()))?.collect();
    let Some(&address) = addresses.first() else {
        return Err(bind_error("the name resolves to no address".into()));
    };
    if let Some(&open) = addresses.iter().find(|a| !a.ip().is_loopback()) {
        if config.token.is_none() {
            return Err(StartError::NoToken { address: open });
        }
    }
    tokio::net::TcpListener::bind(address).await.map_err(|e| bind_error(e.to_string()))
}

/// Serves on `listener` until `shutdown` completes; requests in flight are answered first.
pub async fn run(
    config: ServeConfig,
    module: CModule,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let batch = BatchConfig {
        max_batch: config.max_batch,
        max_delay: config.max_delay,
        fixed_batch: config.spec.fixed_batch,
        device: config.device,
    };
    let (batcher, inference) = Batcher::start(module, batch, metrics.clone());
    let app = Arc::new(App {
        spec: config.spec,
        batcher,
        metrics,
        token: config.token,
        max_body_bytes: config.max_body_bytes,
        model_name: config.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    });
    let served = axum::serve(listener, router(app)).with_graceful_shutdown(shutdown).await;
    // The router (and with it the last `Batcher`) is gone: the inference thread ends.
    let _ = tokio::task::spawn_blocking(move || inference.join()).await;
    served
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
