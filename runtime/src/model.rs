//! `Model`: a network with its parameters, compiled with an optimizer, a loss and metrics, then
//! trained with `fit`, measured with `evaluate`, used with `predict`, saved and loaded.

use crate::callbacks::{Callback, TrainContext};
use crate::checkpoint;
use crate::data::Dataset;
use crate::device::BestDevice;
use crate::distributed;
use crate::error::{Error, Result};
use crate::export::{self, ExportReport, Precision};
use crate::history::{EpochLog, History};
use crate::interrupt;
use crate::layers::{Layer, SummaryRow};
use crate::loss::Loss;
use crate::metrics::{Metric, MetricSet};
use crate::optim::Optimizer;
use crate::progress::{BatchState, Progress, Verbosity};
use crate::secure::IntoDataPath;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};
use torchbook_display::{html_escape, MimeBundle, Render};

/// Where validation figures come from during `fit`.
pub enum Validation {
    None,
    /// Hold out this fraction of the training data (seeded by `FitOptions::seed`).
    Split(f64),
    Data(Dataset),
}

/// Options for [`Model::fit`]; start from `FitOptions::default()` and set what you need.
pub struct FitOptions {
    pub epochs: usize,
    pub batch_size: i64,
    pub validation: Validation,
    /// Batch size for the end-of-epoch validation pass; `None` uses `batch_size`, as Keras's
    /// `validation_batch_size` does. Evaluation keeps no graph, so a larger one costs little
    /// memory and saves the per-batch overhead of small steps (recurrent layers above all).
    pub validation_batch_size: Option<i64>,
    pub shuffle: bool,
    pub seed: u64,
    pub callbacks: Vec<Box<dyn Callback>>,
    /// As in Keras: 0 silent, 1 a live progress bar and curves (one text line per epoch where
    /// the frontend shows text only), 2 one line per epoch.
    pub verbose: u8,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            epochs: 1,
            batch_size: 32,
            validation: Validation::None,
            validation_batch_size: None,
            shuffle: true,
            seed: 0,
            callbacks: Vec::new(),
            verbose: 1,
        }
    }
}

/// What `evaluate` returns.
#[derive(Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub metrics: BTreeMap<String, f64>,
    /// Rows: true class, columns: predicted class (when `Metric::ConfusionMatrix` or a
    /// precision/recall/F1 metric was compiled in).
    pub confusion_matrix: Option<Tensor>,
}

struct Compiled {
    optimizer: Optimizer,
    loss: Loss,
    metrics: Vec<Metric>,
}

pub struct Model {
    vs: nn::VarStore,
    net: Box<dyn Layer>,
    input_shape: Vec<i64>,
    input_kind: Kind,
    output_shape: Vec<i64>,
    compiled: Option<Compiled>,
    epochs_trained: usize,
}

impl Model {
    /// Builds `net` for float inputs of `input_shape` (without the batch dimension) on
    /// `Device::best()`.
    pub fn new(net: impl Layer + 'static, input_shape: &[i64]) -> Result<Self> {
        Self::build(Box::new(net), input_shape, Kind::Float, Device::best())
    }

    /// Builds `net` for integer token ids (e.g. `[sequence_length]`), for models that start with
    /// an `Embedding`.
    pub fn for_tokens(net: impl Layer + 'static, input_shape: &[i64]) -> Result<Self> {
        Self::build(Box::new(net), input_shape, Kind::Int64, Device::best())
    }

    /// Builds on a chosen device and input kind.
    pub fn build(mut net: Box<dyn Layer>, input_shape: &[i64], input_kind: Kind, device: Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let mut dims = vec![2];
        dims.extend_from_slice(input_shape);
        let sample = Tensor::f_zeros(dims.as_slice(), (input_kind, device))?;
        net.build(&vs.root(), &sample)?;
        let out = tch::no_grad(|| net.forward(&sample, false))?;
        Ok(Model {
            vs,
            net,
            input_shape: input_shape.to_vec(),
            input_kind,
            output_shape: out.size()[1..].to_vec(),
            compiled: None,
            epochs_trained: 0,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn epochs_trained(&self) -> usize {
        self.epochs_trained
    }

    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> i64 {
        self.vs.trainable_variables().iter().map(Tensor::numel).map(|n| n as i64).sum()
    }

    /// A Keras-style table of layers, output shapes and parameter counts.
    pub fn summary(&self) -> Summary {
        let vars = self.vs.variables();
        let mut rows = self.net.summary_rows();
        if rows.is_empty() {
            rows.push(SummaryRow { name: self.net.name(), output_shape: self.output_shape.clone(), prefix: String::new() });
        }
        let lines = rows
            .into_iter()
            .map(|row| {
                let params = vars
                    .iter()
                    .filter(|(name, _)| name.starts_with(&row.prefix))
                    .map(|(_, t)| t.numel() as i64)
                    .sum();
                (row.name, row.output_shape, params)
            })
            .collect();
        let trainable = self.parameter_count();
        let total = vars.values().map(|t| t.numel() as i64).sum();
        Summary { input_shape: self.input_shape.clone(), rows: lines, total, trainable }
    }

    /// Chooses the optimizer, the loss and the metrics for `fit` and `evaluate`.
    pub fn compile(&mut self, optimizer: Optimizer, loss: Loss, metrics: &[Metric]) {
        self.compiled = Some(Compiled { optimizer, loss, metrics: metrics.to_vec() });
    }

    fn compiled(&self) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or_else(|| Error::Usage("call model.compile(optimizer, loss, metrics) first".into()))
    }

    fn prepare_input(&self, xs: &Tensor) -> Result<Tensor> {
        prepare(xs, &self.input_shape, self.input_kind)
    }

    /// The network applied to a batch (train mode switches dropout and batch statistics).
    pub fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.prepare_input(xs)?;
        self.net.forward(&xs.to_device(self.device()), train)
    }

    /// Predictions for `xs` in batches, without gradients, in evaluation mode. Stops between
    /// batches on interrupt (returns an error then, since a partial prediction is not useful).
    pub fn predict(&self, xs: &Tensor, batch_size: i64) -> Result<Tensor> {
        let xs = self.prepare_input(xs)?;
        let n = xs.size()[0];
        // With a process group, each rank predicts its contiguous part and the parts are
        // gathered by summing zero-padded full-size outputs (an all-reduce is all the shim has).
        let group = distributed::group().filter(|g| n >= g.world_size() as i64);
        let (start, end) = match &group {
            Some(g) => distributed::shard_range(n, g.rank(), g.world_size()),
            None => (0, n),
        };
        let mut outputs = Vec::new();
        let mut interrupted = false;
        let mut at = start;
        while at < end {
            if interrupt::take_interrupt() {
                interrupted = true;
                break;
            }
            let size = batch_size.max(1).min(end - at);
            let batch = xs.f_narrow(0, at, size)?.to_device(self.device());
            outputs.push(tch::no_grad(|| self.net.forward(&batch, false))?);
            at += size;
        }
        if let Some(g) = &group {
            interrupted = distributed::any_rank(g, interrupted)?;
        }
        if interrupted {
            return Err(Error::Usage("predict was interrupted".into()));
        }
        let Some(g) = group else {
            if outputs.is_empty() {
                let mut dims = vec![0];
                dims.extend_from_slice(&self.output_shape);
                return Ok(Tensor::f_zeros(dims.as_slice(), (Kind::Float, self.device()))?);
            }
            return Ok(Tensor::f_cat(&outputs, 0)?);
        };
        let part = Tensor::f_cat(&outputs, 0)?.to_device(tch::Device::Cpu);
        let mut dims = part.size();
        dims[0] = n;
        let mut all = Tensor::f_zeros(dims.as_slice(), (part.kind(), tch::Device::Cpu))?;
        all.f_narrow(0, start, end - start)?.f_copy_(&part)?;
        distributed::sum(&g, &mut all)?;
        Ok(all.to_device(self.device()))
    }

    /// Loss and metrics over `data`, in evaluation mode.
    pub fn evaluate(&self, data: &Dataset, batch_size: i64) -> Result<Evaluation> {
        let compiled = self.compiled()?;
        let data = data.to_device(self.device());
        let input = (self.input_shape.as_slice(), self.input_kind);
        evaluate_net(&*self.net, &compiled.loss, &compiled.metrics, &data, batch_size, input, true)
    }

    /// Trains on `data`. Returns the History of finished epochs; on interrupt, returns early with
    /// `History::interrupted` set and the model as it was after the last batch.
    pub fn fit(&mut self, data: &Dataset, mut options: FitOptions) -> Result<History> {
        self.compiled()?;
        let validation_batch = options.validation_batch_size.unwrap_or(options.batch_size);
        if validation_batch < 1 || options.batch_size < 1 {
            return Err(Error::Usage(format!(
                "fit: batch sizes must be at least 1, found batch_size {} and validation_batch_size {validation_batch}",
                options.batch_size
            )));
        }
        let (train, validation) = match std::mem::replace(&mut options.validation, Validation::None) {
            Validation::None => (data.clone(), None),
            Validation::Split(fraction) => {
                let (train, val) = data.split(fraction, options.seed)?;
                (train, Some(val.without_transforms()))
            }
            Validation::Data(val) => (data.clone(), Some(val)),
        };
        let device = self.device();
        let train = train.to_device(device);
        let validation = validation.map(|v| v.to_device(device));
        // A stale Ctrl-C from before this cell must not stop the new run.
        interrupt::take_interrupt();
        let params = self.vs.trainable_variables();
        // Data-parallel while a process group is active: every rank starts from rank 0's
        // weights and buffers (sorted by name: every rank's order must be the same).
        let group = distributed::group();
        let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.world_size()));
        if let Some(g) = &group {
            let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            let tensors: Vec<Tensor> = named.into_iter().map(|(_, t)| t).collect();
            distributed::broadcast_all(g, &tensors)?;
            if rank != 0 {
                options.verbose = 0;
            }
        }
        let initial_lr = self.compiled()?.optimizer.lr;
        let mut ctx = TrainContext { var_store: &self.vs, lr: initial_lr, initial_lr, stop: false };
        for cb in options.callbacks.iter_mut() {
            cb.on_train_begin(&mut ctx)?;
        }
        let batch_callbacks: Vec<usize> =
            options.callbacks.iter().enumerate().filter(|(_, c)| c.wants_batches()).map(|(i, _)| i).collect();
        let mut history = History::default();
        let verbosity = Verbosity::from_level(options.verbose);
        let first_epoch = self.epochs_trained + 1;
        let mut progress = Progress::start(verbosity, first_epoch, options.epochs, train.len(), options.batch_size);
        let mut note = None;
        let compiled = self.compiled.as_mut().expect("checked above");
        'epochs: for _ in 0..options.epochs {
            let epoch = self.epochs_trained + 1;
            let started = Instant::now();
            compiled.optimizer.lr = ctx.lr;
            let mut metrics = MetricSet::new(&compiled.metrics);
            let mut loss_sum = Tensor::f_zeros([], (Kind::Double, device))?;
            let mut seen = 0i64;
            let shuffle = options.shuffle.then_some(options.seed.wrapping_add(epoch as u64));
            progress.epoch_started();
            let batches = match &group {
                Some(_) => train.shard_batches(options.batch_size, shuffle, true, rank, world)?,
                None => train.batches(options.batch_size, shuffle, true)?,
            };
            for (index, batch) in batches.enumerate() {
                let interrupted_at = |history: &mut History| {
                    history.interrupted = true;
                    format!(
                        "Interrupted in epoch {epoch} at batch {index}: the model keeps its weights; History has {} complete epoch(s).",
                        history.len()
                    )
                };
                // With a group, ranks agree on an interrupt in the gradients' all-reduce below.
                if group.is_none() && distributed::interrupted_on_any_rank(None)? {
                    note = Some(interrupted_at(&mut history));
                    break 'epochs;
                }
                let (x, y) = batch?;
                let x = prepare(&x, &self.input_shape, self.input_kind)?;
                let preds = self.net.forward(&x, true)?;
                let loss = compiled.loss.compute(&preds, &y)?;
                for p in &params {
                    p.shallow_clone().zero_grad();
                }
                loss.f_backward()?;
                if let Some(g) = &group {
                    let here = crate::interrupt::take_interrupt();
                    if distributed::average_gradients(g, &params, here)? {
                        // Every rank saw it in the same all-reduce: none steps on this batch.
                        note = Some(interrupted_at(&mut history));
                        break 'epochs;
                    }
                }
                compiled.optimizer.step(&params)?;
                let n = x.size()[0];
                seen += n;
                let detached = loss.detach();
                loss_sum = loss_sum.f_add(&detached.to_kind(Kind::Double).f_mul_scalar(n)?)?;
                metrics.update(&preds.detach(), &y)?;
                if progress.redraw_due() {
                    // Reading the figures waits for the device, so only when a redraw is due.
                    let running: Vec<(String, f64)> = metrics.values().into_iter().collect();
                    progress.batch(&BatchState {
                        epoch,
                        batch: index + 1,
                        seen,
                        loss: loss_sum.double_value(&[]) / seen.max(1) as f64,
                        metrics: &running,
                    });
                }
                for &i in &batch_callbacks {
                    options.callbacks[i].on_batch_end(&mut ctx, index, &detached)?;
                }
            }
            if let Some(g) = &group {
                // One History for every rank: the losses and counts of all shards.
                let sum = |t: &mut Tensor| distributed::sum(g, t);
                let mut seen_all = Tensor::from(seen);
                sum(&mut seen_all)?;
                seen = seen_all.int64_value(&[]);
                loss_sum = loss_sum.f_contiguous()?;
                sum(&mut loss_sum)?;
                metrics.sum_across(sum)?;
            }
            let train_seconds = started.elapsed().as_secs_f64();
            let mut log = EpochLog {
                epoch,
                loss: loss_sum.double_value(&[]) / seen.max(1) as f64,
                metrics: metrics.values(),
                val_loss: None,
                val_metrics: BTreeMap::new(),
                lr: compiled.optimizer.lr,
                seconds: 0.0,
                samples_per_second: seen as f64 / train_seconds.max(1e-9),
            };
            self.epochs_trained = epoch;
            if let Some(val) = &validation {
                // Not interruptible: an interrupt here is left for the next epoch's first batch,
                // which ends fit with the History so far.
                let input = (self.input_shape.as_slice(), self.input_kind);
                let evaluation =
                    evaluate_net(&*self.net, &compiled.loss, &compiled.metrics, val, validation_batch, input, false)?;
                log.val_loss = Some(evaluation.loss);
                log.val_metrics = evaluation.metrics;
            }
            log.seconds = started.elapsed().as_secs_f64();
            for cb in options.callbacks.iter_mut() {
                cb.on_epoch_end(&mut ctx, &log)?;
            }
            history.epochs.push(log.clone());
            progress.epoch_end(&log, &history);
            if ctx.stop {
                history.stopped_early = true;
                break;
            }
        }
        for cb in options.callbacks.iter_mut() {
            cb.on_train_end(&mut ctx)?;
        }
        progress.finish(&history, note.as_deref());
        Ok(history)
    }

    /// Writes the model as TorchScript (traced on `example`, a batch like `predict` takes) for
    /// `torch.jit.load`, tch's `CModule` and `torchbook serve`, with a `<path>.json` sidecar
    /// describing its input. The traced module is checked against the model first.
    pub fn export_torchscript(&self, path: impl AsRef<std::path::Path>, example: &Tensor) -> Result<ExportReport> {
        self.export_torchscript_with(path, example, Precision::F32)
    }

    /// `export_torchscript` with 16-bit weights and arithmetic (`Precision::F16`/`BF16`): half
    /// the file; the module still takes and returns `float32`.
    pub fn export_torchscript_with(&self, path: impl AsRef<std::path::Path>, example: &Tensor, precision: Precision) -> Result<ExportReport> {
        let model = export::Exportable {
            vs: &self.vs,
            net: self.net.as_ref(),
            input_shape: &self.input_shape,
            input_kind: self.input_kind,
            output_shape: &self.output_shape,
        };
        export::export(model, path.as_ref(), example, precision)
    }

    /// Saves the weights to a `.safetensors` file (sealed when given
    /// `secure::encrypted(path, &key)`).
    pub fn save_weights(&self, path: impl IntoDataPath) -> Result<()> {
        checkpoint::save_weights(&self.vs, &path.into_data_path())
    }

    /// Loads weights saved by `save_weights`; a file for another shape of model is refused
    /// with the name of the first mismatched tensor, and the model is left unchanged.
    pub fn load_weights(&mut self, path: impl IntoDataPath) -> Result<()> {
        checkpoint::load_weights(&self.vs, &path.into_data_path())
    }

    /// Saves weights, optimizer state and the epoch count.
    pub fn save_checkpoint(&self, path: impl IntoDataPath) -> Result<()> {
        let compiled = self.compiled()?;
        checkpoint::save_checkpoint(&self.vs, &compiled.optimizer, self.epochs_trained, &path.into_data_path())
    }

    /// Restores a checkpoint saved by `save_checkpoint` (compile first with the same optimizer
    /// kind); returns the epoch it was saved at, from which `fit` continues counting.
    pub fn load_checkpoint(&mut self, path: impl IntoDataPath) -> Result<usize> {
        let compiled = self.compiled.as_mut().ok_or_else(|| Error::Usage("call model.compile(...) before load_checkpoint".into()))?;
        let epoch = checkpoint::load_checkpoint(&self.vs, &mut compiled.optimizer, &path.into_data_path())?;
        self.epochs_trained = epoch;
        Ok(epoch)
    }
}

/// Loss and metrics of `net` over `data` (already on the model's device), in evaluation mode.
/// With `interruptible`, an interrupt between batches ends it with an error.
fn evaluate_net(
    net: &dyn Layer,
    loss: &Loss,
    metric_kinds: &[Metric],
    data: &Dataset,
    batch_size: i64,
    (input_shape, input_kind): (&[i64], Kind),
    interruptible: bool,
) -> Result<Evaluation> {
    // With a process group, each rank evaluates its contiguous part and the sums are reduced:
    // every rank returns the whole data's figures.
    let total = data.len();
    let group = distributed::group().filter(|g| total >= g.world_size() as i64);
    let part;
    let data = match &group {
        Some(g) => {
            let (start, end) = distributed::shard_range(total, g.rank(), g.world_size());
            part = data.select(&(start..end).collect::<Vec<i64>>())?;
            &part
        }
        None => data,
    };
    let mut metrics = MetricSet::new(metric_kinds);
    let mut loss_sum = Tensor::f_zeros([], (Kind::Double, data.features.device()))?;
    let mut interrupted = false;
    for batch in data.batches(batch_size, None, false)? {
        if interruptible && interrupt::take_interrupt() {
            interrupted = true;
            break;
        }
        let (x, y) = batch?;
        let x = prepare(&x, input_shape, input_kind)?;
        let preds = tch::no_grad(|| net.forward(&x, false))?;
        let batch_loss = loss.compute(&preds, &y)?;
        loss_sum = loss_sum.f_add(&batch_loss.to_kind(Kind::Double).f_mul_scalar(x.size()[0])?)?;
        metrics.update(&preds, &y)?;
    }
    if let Some(g) = &group {
        interrupted = distributed::any_rank(g, interrupted)?;
        if !interrupted {
            let sum = |t: &mut Tensor| distributed::sum(g, t);
            loss_sum = loss_sum.f_contiguous()?;
            sum(&mut loss_sum)?;
            metrics.sum_across(sum)?;
        }
    }
    if interrupted {
        return Err(Error::Usage("evaluate was interrupted".into()));
    }
    Ok(Evaluation {
        loss: loss_sum.double_value(&[]) / total.max(1) as f64,
        metrics: metrics.values(),
        confusion_matrix: metrics.confusion_matrix(),
    })
}

/// Checks the shape and brings the kind in line (any float for float models, as Keras casts;
/// token models need integers).
fn prepare(xs: &Tensor, input_shape: &[i64], input_kind: Kind) -> Result<Tensor> {
    let size = xs.size();
    if size.len() != input_shape.len() + 1 || size[1..] != input_shape[..] {
        return Err(Error::shape("model input", format!("[batch, {}]", join(input_shape)), &size));
    }
    let is_float = xs.is_floating_point();
    match input_kind {
        Kind::Int64 if is_float => Err(Error::Usage(format!(
            "model input: expected integer token ids (Int64), found {:?}",
            xs.kind()
        ))),
        kind if xs.kind() != kind => Ok(xs.to_kind(kind)),
        _ => Ok(xs.shallow_clone()),
    }
}

fn join(dims: &[i64]) -> String {
    dims.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Model on {:?}, {} epochs trained\n{}", self.device(), self.epochs_trained, self.summary())
    }
}

/// The table printed by `model.summary()`.
#[derive(Debug, Clone)]
pub struct Summary {
    pub input_shape: Vec<i64>,
    /// (layer, output shape without batch, parameters)
    pub rows: Vec<(String, Vec<i64>, i64)>,
    pub total: i64,
    pub trainable: i64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = |s: &[i64]| format!("(None, {})", join(s));
        let w0 = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(12) + 2;
        let w1 = self.rows.iter().map(|r| shape(&r.1).len()).max().unwrap_or(0).max(12) + 2;
        let rule = "─".repeat(w0 + w1 + 12);
        writeln!(f, "Input: {}", shape(&self.input_shape))?;
        writeln!(f, "{rule}")?;
        writeln!(f, "{:<w0$}{:<w1$}{:>12}", "Layer", "Output shape", "Param #")?;
        writeln!(f, "{rule}")?;
        for (name, out, params) in &self.rows {
            writeln!(f, "{:<w0$}{:<w1$}{:>12}", name, shape(out), params)?;
        }
        writeln!(f, "{rule}")?;
        writeln!(f, "Total params: {}", self.total)?;
        writeln!(f, "Trainable params: {}", self.trainable)?;
        write!(f, "Non-trainable params: {}", self.total - self.trainable)
    }
}

impl Summary {
    fn html(&self) -> String {
        let shape = |s: &[i64]| html_escape(&format!("(None, {})", join(s)));
        let mut html = format!(
            "<table><thead><tr><th style=\"text-align:left\">Layer</th><th style=\"text-align:left\">Output shape</th>\
             <th>Param #</th></tr></thead><tbody><tr><td>Input</td><td>{}</td><td></td></tr>",
            shape(&self.input_shape)
        );
        for (name, out, params) in &self.rows {
            html.push_str(&format!(
                "<tr><td style=\"text-align:left\">{}</td><td style=\"text-align:left\">{}</td><td>{params}</td></tr>",
                html_escape(name),
                shape(out)
            ));
        }
        html.push_str(&format!(
            "</tbody></table><div>Total params: {} · trainable: {} · non-trainable: {}</div>",
            self.total,
            self.trainable,
            self.total - self.trainable
        ));
        html
    }
}

impl Render for Summary {
    fn render(&self) -> MimeBundle {
        MimeBundle::text(self.to_string()).with("text/html", self.html())
    }
}

impl Evaluation {
    /// One row: the loss and each metric. Under Zeppelin an `Evaluation` shows as this table.
    pub fn table(&self) -> crate::table::Table {
        let mut table = crate::table::Table::new().column("loss", vec![self.loss]);
        for (name, value) in &self.metrics {
            table = table.and_then(|t| t.column(name, vec![*value]));
        }
        table.expect("one value in every column")
    }
}

/// The loss and metrics as a one-row table (the confusion matrix is `confusion_matrix`).
impl Render for Evaluation {
    fn render(&self) -> MimeBundle {
        let table = self.table();
        if torchbook_display::frontend() == torchbook_display::Frontend::Zeppelin {
            return table.zeppelin_bundle();
        }
        let text = std::iter::once(format!("loss {:.4}", self.loss))
            .chain(self.metrics.iter().map(|(name, value)| format!("{name} {value:.4}")))
            .collect::<Vec<_>>()
            .join(", ");
        MimeBundle::text(text).with("text/html", table.to_html())
    }
}

/// A model cell value shows its device, epochs and layer table.
impl Render for Model {
    fn render(&self) -> MimeBundle {
        let summary = self.summary();
        let head = format!("Model on {:?}, {} epochs trained", self.device(), self.epochs_trained);
        MimeBundle::text(format!("{head}\n{summary}"))
            .with("text/html", format!("<div><b>{}</b></div>{}", html_escape(&head), summary.html()))
    }
}
