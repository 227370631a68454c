//! TorchScript export: a trained [`Model`](crate::model::Model) traced into a `.pt` file that
//! Python's `torch.jit.load`, tch's `CModule` and `torchbook serve` load without this crate.
//!
//! Tracing (tch's `CModule::create_by_tracing`) runs the network once, in evaluation mode, on
//! the example input and records the libtorch operations it calls; the weights become
//! constants of the graph. Two consequences, both checked here rather than left to surprise a
//! user later: a layer that reads a concrete size in Rust (attention and recurrent layers
//! reshape with the batch size) gives a graph fixed to the example's batch size, and a graph
//! that disagrees with the model is refused. The file is written whole or not at all
//! (`torchbook_display::atomic`), and beside it a small JSON sidecar, `<file>.json`, records the
//! per-example input shape and dtype, the output, the precision, whether the batch size may
//! vary and the SHA-256 of the `.pt` it describes (tch cannot add extra files to the archive):
//! the service validates requests with it and refuses a sidecar that belongs to another file.
//!
//! Half precision ([`Precision::F16`], [`Precision::BF16`]) stores the weights in 16 bits
//! (half the file) and computes in them; the traced graph still takes and returns `float32`,
//! casting on the way in and out, so clients do not change.

use crate::error::{Error, Result};
use crate::layers::Layer;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use tch::{nn, CModule, Kind, Tensor};
use torchbook_display::{html_escape, MimeBundle, Render};

/// The format name in the sidecar; the service refuses sidecars of another format.
pub const SIDECAR_FORMAT: &str = "torchbook-torchscript/1";

/// The numeric precision of an exported model's weights and arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// As trained (32-bit floats).
    #[default]
    F32,
    /// IEEE half precision: half the file; fast on GPUs, usually slower than F32 on CPUs.
    F16,
    /// bfloat16: half the file, F32's range with 8 bits of mantissa.
    BF16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::F16 => Kind::Half,
            Precision::BF16 => Kind::BFloat16,
        }
    }

    /// The name used in the sidecar and by `torchbook serve` (`float32`, `float16`, `bfloat16`).
    pub fn name(self) -> &'static str {
        dtype_name(self.kind())
    }
}

/// What an export wrote and how faithful the file is to the model.
#[derive(Clone, Debug)]
pub struct ExportReport {
    pub path: PathBuf,
    /// The sidecar written beside it (`<path>.json`).
    pub sidecar: PathBuf,
    /// Size of the `.pt` file.
    pub bytes: u64,
    pub precision: Precision,
    /// Largest absolute difference between the exported module's outputs and the model's own
    /// (in F32, on the example input): 0 up to rounding for F32, the cost of 16 bits otherwise.
    pub max_abs_diff: f64,
    /// Whether the traced graph accepts any batch size (checked on a batch of another size);
    /// when not, it only takes batches of `example_batch` examples.
    pub dynamic_batch: bool,
    pub example_batch: i64,
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Exported {} ({} bytes, {}); max |difference| from the model on the example: {:.3e}; batch size: {}",
            self.path.display(),
            self.bytes,
            self.precision.name(),
            self.max_abs_diff,
            if self.dynamic_batch { "any".to_string() } else { format!("{} only", self.example_batch) }
        )
    }
}

impl Render for ExportReport {
    fn render(&self) -> MimeBundle {
        MimeBundle::text(self.to_string()).with("text/html", format!("<pre>{}</pre>", html_escape(&self.to_string())))
    }
}

/// What the exporter needs from a model (its fields are private to `model.rs`).
pub(crate) struct Exportable<'a> {
    pub vs: &'a nn::VarStore,
    pub net: &'a dyn Layer,
    pub input_shape: &'a [i64],
    pub input_kind: Kind,
    pub output_shape: &'a [i64],
}

/// The sidecar's name for a `.pt` file: the same name with `.json` appended.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// The dtype names of the sidecar and of the service's `X-Tensor-Dtype` header (numpy's).
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Int64 => "int64",
        Kind::Int => "int32",
        Kind::Int16 => "int16",
        Kind::Int8 => "int8",
        Kind::Uint8 => "uint8",
        Kind::Bool => "bool",
        _ => "unsupported",
    }
}

pub(crate) fn export(model: Exportable<'_>, path: &Path, example: &Tensor, precision: Precision) -> Result<ExportReport> {
    let example = checked_example(&model, path, example)?;
    let reference = tch::no_grad(|| model.net.forward(&example, false))?;
    let other = other_batch(&example)?;
    let other_reference = tch::no_grad(|| model.net.forward(&other, false))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    // Traced and saved into the temporary file, then loaded back from it and checked: only a
    // file that loads and agrees with the model replaces `path`.
    let mut checked: Option<Result<(f64, bool, Kind)>> = None;
    let written = torchbook_display::atomic::write_with(path, |temporary| {
        let result = trace_into(&model, &example, precision, temporary).and_then(|()| {
            let module = CModule::load(temporary)?;
            check(&module, path, precision, (&example, &reference), (&other, &other_reference))
        });
        let failed = result.is_err();
        checked = Some(result);
        if failed {
            Err(std::io::Error::other("the export was not written"))
        } else {
            Ok(())
        }
    });
    let (max_abs_diff, dynamic_batch, output_kind) = match (checked, written) {
        (Some(Err(error)), _) => return Err(error),
        (_, Err(error)) => return Err(Error::io(path, error)),
        (Some(Ok(figures)), Ok(())) => figures,
        (None, Ok(())) => unreachable!("write_with ran the writer"),
    };
    let batch = example.size()[0];
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let sidecar = sidecar_path(path);
    let meta = serde_json::json!({
        "format": SIDECAR_FORMAT,
        "model_sha256": hex(&Sha256::digest(&bytes)),
        "method": "forward",
        "input_shape": model.input_shape,
        "input_dtype": dtype_name(model.input_kind),
        "output_shape": model.output_shape,
        "output_dtype": dtype_name(output_kind),
        "precision": precision.name(),
        "dynamic_batch": dynamic_batch,
        "example_batch": batch,
        "max_abs_diff": max_abs_diff,
    });
    let text = serde_json::to_string_pretty(&meta).map_err(|e| Error::parse(&sidecar, None, e.to_string()))?;
    torchbook_display::atomic::write(&sidecar, text + "\n").map_err(|e| Error::io(&sidecar, e))?;
    Ok(ExportReport {
        path: path.to_path_buf(),
        sidecar,
        bytes: bytes.len() as u64,
        precision,
        max_abs_diff,
        dynamic_batch,
        example_batch: batch,
    })
}

/// The example in the model's input kind, after checking its shape and contents.
fn checked_example(model: &Exportable<'_>, path: &Path, example: &Tensor) -> Result<Tensor> {
    let size = example.size();
    if size.len() != model.input_shape.len() + 1 || size[1..] != *model.input_shape || size[0] < 1 {
        let dims = model.input_shape.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        return Err(Error::shape("export_torchscript example input", format!("[batch ≥ 1, {dims}]"), &size));
    }
    let example = match (is_float(model.input_kind), example.is_floating_point()) {
        (false, true) => {
            return Err(Error::Export {
                path: path.to_path_buf(),
                expected: format!("an example of integer token ids ({})", dtype_name(model.input_kind)),
                found: format!("{} values", dtype_name(example.kind())),
            })
        }
        _ => example.f_to_kind(model.input_kind)?,
    };
    Ok(example.to_device(model.vs.device()).detach())
}

/// Traces the network in evaluation mode and saves the module to `file`. The graph's constants
/// are the model's own variables (not copies), so the file is written while they are in the
/// export's state (no gradients, 16 bits when asked); `VariablesSwap` restores them after.
fn trace_into(model: &Exportable<'_>, example: &Tensor, precision: Precision, file: &Path) -> Result<()> {
    let _guard = VariablesSwap::new(model.vs, precision.kind())?;
    let (kind, float_input) = (precision.kind(), is_float(model.input_kind));
    let mut failure = None;
    let mut closure = |inputs: &[Tensor]| {
        let run = || -> Result<Tensor> {
            let xs = if float_input && kind != Kind::Float { inputs[0].f_to_kind(kind)? } else { inputs[0].shallow_clone() };
            let ys = model.net.forward(&xs, false)?;
            Ok(if ys.is_floating_point() && ys.kind() != Kind::Float { ys.f_to_kind(Kind::Float)? } else { ys })
        };
        match tch::no_grad(run) {
            Ok(ys) => vec![ys],
            Err(error) => {
                failure = Some(error);
                vec![inputs[0].shallow_clone()]
            }
        }
    };
    let traced = CModule::create_by_tracing("TorchbookModel", "forward", std::slice::from_ref(example), &mut closure);
    if let Some(error) = failure {
        return Err(error);
    }
    traced?.save(file)?;
    Ok(())
}

/// The loaded module against the model: its largest difference on the example (refused past
/// the precision's tolerance), whether it also runs on a batch of another size (a graph with
/// the batch size baked in fails or mixes examples up there), and its output kind.
fn check(
    module: &CModule,
    path: &Path,
    precision: Precision,
    (example, reference): (&Tensor, &Tensor),
    (other, other_reference): (&Tensor, &Tensor),
) -> Result<(f64, bool, Kind)> {
    let output = tch::no_grad(|| module.forward_ts(&[example]))?;
    let max_abs_diff = max_abs_diff(&output, reference)?;
    let scale = 1.0 + reference.abs().max().double_value(&[]);
    let tolerance = scale
        * match precision {
            Precision::F32 => 1e-4,
            Precision::F16 => 5e-2,
            Precision::BF16 => 2e-1,
        };
    if max_abs_diff.is_nan() || max_abs_diff > tolerance {
        return Err(Error::Export {
            path: path.to_path_buf(),
            expected: format!("the traced module's outputs within {tolerance:.1e} of the model's ({})", precision.name()),
            found: format!("a largest difference of {max_abs_diff:.3e} (a layer whose forward depends on more than its input tensor?)"),
        });
    }
    let dynamic_batch = match tch::no_grad(|| module.forward_ts(&[other])) {
        Ok(out) if out.size() == other_reference.size() => max_abs_diff_or_inf(&out, other_reference) <= 2e-1 * scale,
        _ => false,
    };
    Ok((max_abs_diff, dynamic_batch, output.kind()))
}

/// A batch of another size than the example's, from its examples.
fn other_batch(example: &Tensor) -> Result<Tensor> {
    let n = example.size()[0];
    Ok(if n > 1 { example.f_narrow(0, 0, n - 1)? } else { Tensor::f_cat(&[example, example, example], 0)? })
}

fn max_abs_diff_or_inf(a: &Tensor, b: &Tensor) -> f64 {
    max_abs_diff(a, b).unwrap_or(f64::INFINITY)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.size() != b.size() {
        return Err(Error::shape("traced module output", format!("{:?} (the model's)", b.size()), &a.size()));
    }
    if a.numel() == 0 {
        return Ok(0.0);
    }
    let a = a.f_to_kind(Kind::Double)?;
    let b = b.f_to_kind(Kind::Double)?;
    Ok(a.f_sub(&b)?.abs().max().double_value(&[]))
}

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The model's variables made traceable for the time of an export: gradients off, and for a
/// 16-bit export the floating-point variables cast. Dropping it restores both, so a failed
/// export leaves the model as it was.
struct VariablesSwap {
    saved: Vec<(Tensor, Tensor, bool)>,
}

impl VariablesSwap {
    fn new(vs: &nn::VarStore, kind: Kind) -> Result<Self> {
        let mut swap = VariablesSwap { saved: Vec::new() };
        for (_, variable) in vs.variables() {
            let original = variable.detach();
            let requires_grad = variable.requires_grad();
            let mut handle = variable.shallow_clone();
            swap.saved.push((variable, original.shallow_clone(), requires_grad));
            let _ = handle.f_set_requires_grad(false)?;
            if original.is_floating_point() && original.kind() != kind {
                tch::no_grad(|| -> Result<()> { Ok(handle.f_set_data(&original.f_to_kind(kind)?)?) })?;
            }
        }
        Ok(swap)
    }
}

impl Drop for VariablesSwap {
    fn drop(&mut self) {
        for (variable, original, requires_grad) in &mut self.saved {
            if variable.kind() != original.kind() {
                let _ = tch::no_grad(|| variable.f_set_data(original));
            }
            let _ = variable.f_set_requires_grad(*requires_grad);
        }
    }
}
