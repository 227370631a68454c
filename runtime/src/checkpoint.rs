//! Saving and loading: weights alone (`.safetensors`, readable by PyTorch's safetensors too)
//! and whole checkpoints (weights, optimizer state and epoch in one safetensors file). Loading
//! checks every tensor's name and shape first, so a model of another shape gets an error that
//! names the mismatched tensor and leaves the model untouched. Saving replaces the file whole
//! (`torchbook_display::atomic`). Any of them can be sealed with a key (`secure::encrypted`):
//! the safetensors bytes are then encrypted in memory, so plaintext weights never reach the disk.

use crate::error::{Error, Result};
use crate::optim::Optimizer;
use std::collections::HashMap;
use crate::secure::DataPath;
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::path::Path;
use tch::{nn, Tensor};

const MODEL: &str = "model.";
const OPTIMIZER: &str = "optimizer.";
const EPOCH: &str = "meta.epoch";

/// Named tensors from a safetensors file, decrypted in memory when it is sealed.
pub(crate) fn read(file: &DataPath) -> Result<HashMap<String, Tensor>> {
    let bytes = file.read()?;
    from_safetensors(&bytes).map_err(|message| Error::parse(&file.path, None, message))
}

/// Named tensors from safetensors bytes.
pub fn from_safetensors(bytes: &[u8]) -> std::result::Result<HashMap<String, Tensor>, String> {
    let parsed = SafeTensors::deserialize(bytes).map_err(|e| format!("not a readable safetensors file: {e:?}"))?;
    parsed
        .tensors()
        .into_iter()
        .map(|(name, view)| match Tensor::try_from(view) {
            Ok(tensor) => Ok((name, tensor)),
            Err(e) => Err(format!("tensor {name:?}: {e}")),
        })
        .collect()
}

/// Writes named tensors as one safetensors file, replaced whole (sealed first when `file`
/// has a key): a process killed mid-save, or a full disk, keeps the previous file.
pub(crate) fn write(file: &DataPath, named: &[(String, Tensor)]) -> Result<()> {
    let bytes = to_safetensors(named).map_err(|message| Error::parse(&file.path, None, message))?;
    file.write(&bytes)
}

/// The safetensors bytes of named tensors (copied to the CPU, made contiguous).
pub fn to_safetensors(named: &[(String, Tensor)]) -> std::result::Result<Vec<u8>, String> {
    let views = named
        .iter()
        .map(|(name, tensor)| CpuView::new(tensor).map(|view| (name.as_str(), view)))
        .collect::<std::result::Result<Vec<_>, String>>()?;
    safetensors::tensor::serialize(views, &None).map_err(|e| format!("cannot write safetensors: {e:?}"))
}

/// A tensor as safetensors sees it: its bytes on the CPU.
struct CpuView {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl CpuView {
    fn new(tensor: &Tensor) -> std::result::Result<CpuView, String> {
        let cpu = tensor.detach().to_device(tch::Device::Cpu).contiguous();
        let dtype = Dtype::try_from(cpu.kind()).map_err(|e| e.to_string())?;
        let mut bytes = vec![0u8; cpu.numel() * cpu.kind().elt_size_in_bytes()];
        cpu.f_copy_data_u8(&mut bytes, cpu.numel()).map_err(|e| e.to_string())?;
        Ok(CpuView {
            dtype,
            shape: cpu.size().iter().map(|&d| d as usize).collect(),
            bytes,
        })
    }
}

impl View for CpuView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Checks that `saved` has every variable of `vs` with the same shape, then copies them in.
fn load_into(vs: &nn::VarStore, saved: &HashMap<String, Tensor>, prefix: &str, path: &Path) -> Result<()> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in &names {
        let var = &vars[*name];
        match saved.get(&format!("{prefix}{name}")) {
            None => {
                return Err(Error::Checkpoint {
                    path: path.into(),
                    tensor: (*name).clone(),
                    expected: format!("shape {:?}", var.size()),
                    found: "no such tensor in the file".into(),
                })
            }
            Some(t) if t.size() != var.size() => {
                return Err(Error::Checkpoint {
                    path: path.into(),
                    tensor: (*name).clone(),
                    expected: format!("shape {:?}", var.size()),
                    found: format!("shape {:?}", t.size()),
                })
            }
            Some(_) => {}
        }
    }
    let extra: Vec<&str> = saved
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter(|k| !vars.contains_key(*k))
        .collect();
    if let Some(first) = extra.first() {
        return Err(Error::Checkpoint {
            path: path.into(),
            tensor: (*first).to_owned(),
            expected: "no such tensor (the model has none of that name)".into(),
            found: format!("{} tensor(s) the model does not have", extra.len()),
        });
    }
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            let src = &saved[&format!("{prefix}{name}")];
            var.f_copy_(&src.to_kind(var.kind()).to_device(var.device()))?;
        }
        Ok(())
    })
}

pub fn save_weights(vs: &nn::VarStore, path: &DataPath) -> Result<()> {
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    write(path, &named)
}

pub fn load_weights(vs: &nn::VarStore, path: &DataPath) -> Result<()> {
    let saved = read(path)?;
    load_into(vs, &saved, "", &path.path)
}

pub fn save_checkpoint(vs: &nn::VarStore, optimizer: &Optimizer, epoch: usize, path: &DataPath) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (format!("{MODEL}{k}"), v)).collect();
    named.extend(optimizer.state_tensors().into_iter().map(|(k, v)| (format!("{OPTIMIZER}{k}"), v)));
    named.push((EPOCH.to_owned(), Tensor::from(epoch as i64)));
    write(path, &named)
}

/// Restores weights and optimizer state; returns the epoch the checkpoint was saved at.
pub fn load_checkpoint(vs: &nn::VarStore, optimizer: &mut Optimizer, file: &DataPath) -> Result<usize> {
    let saved = read(file)?;
    let path = &file.path;
    let epoch = saved
        .get(EPOCH)
        .map(|t| t.int64_value(&[]) as usize)
        .ok_or_else(|| Error::parse(path, None, "not a torchbook checkpoint (no meta.epoch): use load_weights for weight files"))?;
    load_into(vs, &saved, MODEL, path)?;
    let optimizer_state: HashMap<String, Tensor> = saved
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(OPTIMIZER).map(|k| (k.to_owned(), v.shallow_clone())))
        .collect();
    optimizer.load_state(&optimizer_state, &vs.trainable_variables())?;
    Ok(epoch)
}
