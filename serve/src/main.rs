//! `torchbook-serve MODEL.pt [options]` (also run as `torchbook serve …`): the command line
//! over `torchbook_serve::server`.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tch::Device;
use torchbook_serve::auth::Token;
use torchbook_serve::server::{self, ServeConfig};
use torchbook_serve::spec::ModelSpec;

/// Serve a TorchScript model over HTTP: POST /v1/predict (JSON or raw tensors), GET /healthz,
/// GET /metrics (Prometheus). Requests arriving together are run as one batch.
#[derive(Parser)]
#[command(name = "torchbook serve", version)]
struct Args {
    /// The TorchScript file (from Model::export_torchscript, whose MODEL.json sidecar gives the
    /// input; or any TorchScript file with --input-shape).
    model: PathBuf,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on. Anything but loopback needs --token-file or --token-env.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Most examples run as one batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(i64).range(1..=65536))]
    max_batch: i64,
    /// How long a batch waits for more requests after its first (0: only those already queued).
    #[arg(long, default_value_t = 0)]
    max_delay_ms: u64,
    /// A file holding the bearer token clients must send (at least 16 characters).
    #[arg(long, conflicts_with = "token_env")]
    token_file: Option<PathBuf>,
    /// The name of an environment variable holding the bearer token.
    #[arg(long)]
    token_env: Option<String>,
    /// Largest request body accepted (bytes).
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Per-example input shape when the model has no sidecar, e.g. 1,28,28.
    #[arg(long)]
    input_shape: Option<String>,
    /// Input dtype with --input-shape (float32, float64, float16, bfloat16, int64, int32, uint8).
    #[arg(long)]
    input_dtype: Option<String>,
    /// cpu, or cuda / cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// libtorch's intra-op threads (default: libtorch's choice, one per core).
    #[arg(long)]
    threads: Option<i32>,
}

fn main() {
    if let Err(error) = run(Args::parse()) {
        eprintln!("torchbook serve: {error:#}");
        std::process::exit(1);
    }
}

fn device(name: &str) -> anyhow::Result<Device> {
    Ok(match name {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match name.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Device::Cuda(n),
            None => anyhow::bail!("--device: expected cpu, cuda or cuda:N, found {name:?}"),
        },
    })
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads);
    }
    let spec = ModelSpec::resolve(&args.model, args.input_shape.as_deref(), args.input_dtype.as_deref())?;
    let token = match (&args.token_file, &args.token_env) {
        (Some(file), _) => Some(Token::from_file(file)?),
        (None, Some(name)) => Some(Token::from_env(name)?),
        (None, None) => None,
    };
    let config = ServeConfig {
        model: args.model.clone(),
        spec,
        host: args.host,
        port: args.port,
        max_batch: args.max_batch,
        max_delay: Duration::from_millis(args.max_delay_ms),
        max_body_bytes: args.max_body_bytes,
        token,
        device: device(&args.device)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = server::bind(&config).await?;
        let module = server::load(&config)?;
        let address = listener.local_addr()?;
        eprintln!(
            "torchbook serve: {} (input {}, max batch {}, max delay {} ms{}) listening on http://{address}",
            config.model.display(),
            config.spec.describe_input(),
            config.max_batch,
            config.max_delay.as_millis(),
            if config.token.is_some() { ", bearer token required" } else { "" },
        );
        server::run(config, module, listener, server::shutdown_signal()).await?;
        eprintln!("torchbook serve: stopped");
        anyhow::Ok(())
    })
}
