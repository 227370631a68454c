//! `torchbook serve`: an HTTP inference service for a TorchScript model, as exported by
//! `Model::export_torchscript` (or `torch.jit.save`). Its own binary, `torchbook-serve`,
//! because it links libtorch and the kernel binary `torchbook` must not (its start time and
//! memory are product features): `torchbook serve ARGS…` executes `torchbook-serve ARGS…`.
//!
//! - [`spec`]: the model's per-example input (the export's sidecar, or flags);
//! - [`codec`]: JSON and raw-tensor bodies to tensors and back ([`json_input`]: the JSON parser);
//! - [`batcher`]: the inference thread and dynamic batching;
//! - [`http`]: the routes, authentication and error answers;
//! - [`auth`]: bearer tokens, compared in constant time;
//! - [`metrics`]: Prometheus counters and histograms;
//! - [`server`]: loading, binding, serving and graceful shutdown.
//!
//! docs/DEPLOYMENT.md, "Serving a trained model", shows it in use.

pub mod auth;
pub mod batcher;
pub mod codec;
pub mod http;
pub mod json_input;
pub mod metrics;
pub mod server;
pub mod spec;
