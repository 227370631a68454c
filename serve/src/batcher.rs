//! Dynamic batching: one inference thread owns the `CModule`; request handlers send it their
//! decoded batch and wait for their part of the answer. The thread takes the first pending
//! request, then whatever else is already waiting, up to `max_batch` examples; with
//! `max_delay` above zero it also waits up to that long after the first for more to arrive.
//! It concatenates along dimension 0, runs the model once and splits the outputs back. So
//! under load (requests queue while a batch runs) batches form by themselves, and a lone
//! request never waits (the default delay is 0).
//!
//! A model traced with its batch size baked in (`ModelSpec::fixed_batch`) gets every batch
//! padded with zeros to that size and its outputs cut back.

use crate::codec::first_line;
use crate::metrics::Metrics;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tch::{CModule, Device, Tensor};
use tokio::sync::oneshot;

/// How many requests may wait for the inference thread before new ones are answered 503.
pub const QUEUE_CAPACITY: usize = 4096;

pub struct Job {
    pub input: Tensor,
    pub reply: oneshot::Sender<Result<Tensor, String>>,
}

#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    pub max_batch: i64,
    pub max_delay: Duration,
    pub fixed_batch: Option<i64>,
    pub device: Device,
}

/// The handlers' side: a bounded queue to the inference thread.
#[derive(Clone)]
pub struct Batcher {
    queue: SyncSender<Job>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full (overloaded): answer 503.
    Busy,
    /// The inference thread has stopped (shutting down).
    Stopped,
}

impl Batcher {
    /// Starts the inference thread with `module`; it ends when every `Batcher` clone is gone.
    pub fn start(module: CModule, config: BatchConfig, metrics: Arc<Metrics>) -> (Batcher, JoinHandle<()>) {
        let (queue, jobs) = sync_channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || run(module, config, jobs, metrics))
            .expect("cannot start the inference thread");
        (Batcher { queue }, thread)
    }

    /// Queues `input`; the receiver gets its outputs (or a libtorch error message).
    pub fn submit(&self, input: Tensor) -> Result<oneshot::Receiver<Result<Tensor, String>>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { input, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(SubmitError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }
}

fn run(module: CModule, config: BatchConfig, jobs: Receiver<Job>, metrics: Arc<Metrics>) {
    let limit = config.fixed_batch.unwrap_or(config.max_batch).max(1);
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let deadline = Instant::now() + config.max_delay;
        let mut examples = first.input.size()[0];
        let mut batch = vec![first];
        while examples < limit {
            let next = if config.max_delay.is_zero() {
                jobs.try_recv().ok()
            } else {
                match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
                }
            };
            let Some(job) = next else { break };
            let n = job.input.size()[0];
            if examples + n > limit {
                carried = Some(job);
                break;
            }
            examples += n;
            batch.push(job);
        }
        metrics.observe_batch(examples as u64, batch.len() as u64);
        infer(&module, &config, batch, examples);
    }
}

fn infer(module: &CModule, config: &BatchConfig, batch: Vec<Job>, examples: i64) {
    let sizes: Vec<i64> = batch.iter().map(|job| job.input.size()[0]).collect();
    let result = tch::no_grad(|| -> Result<Tensor, tch::TchError> {
        let inputs: Vec<&Tensor> = batch.iter().map(|job| &job.input).collect();
        let mut xs = if inputs.len() == 1 { inputs[0].shallow_clone() } else { Tensor::f_cat(&inputs, 0)? };
        if let Some(n) = config.fixed_batch.filter(|&n| n > examples) {
            let mut pad = xs.size();
            pad[0] = n - examples;
            xs = Tensor::f_cat(&[xs.shallow_clone(), Tensor::f_zeros(pad.as_slice(), (xs.kind(), xs.device()))?], 0)?;
        }
        let ys = module.forward_ts(&[xs.to_device(config.device)])?;
        ys.f_to_device(Device::Cpu)
    });
    match result {
        Ok(ys) if ys.dim() >= 1 && ys.size()[0] >= examples => {
            let mut start = 0;
            for (job, n) in batch.into_iter().zip(sizes) {
                let part = ys.f_narrow(0, start, n).and_then(|t| t.f_contiguous()).map_err(|e| first_line(&e.to_string()));
                let _ = job.reply.send(part);
                start += n;
            }
        }
        Ok(ys) => {
            let message = format!("the model returned shape {:?} for a batch of {examples}: expected the batch first", ys.size());
            reply_all(batch, &message);
        }
        Err(error) => reply_all(batch, &first_line(&error.to_string())),
    }
}

fn reply_all(batch: Vec<Job>, message: &str) {
    for job in batch {
        let _ = job.reply.send(Err(message.to_string()));
    }
}
