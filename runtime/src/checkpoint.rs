//! Saving and loading: weights alone (`.safetensors`, readable by PyTorch's safetensors too)
//! and whole checkpoints (weights, optimizer state and epoch in one safetensors file). Loading
//! checks every tensor's name and shape first, so a model of another shape gets an error that
//! names the mismatched tensor and leaves the model untouched. Saving replaces the file whole
//! (`torchbook_display::atomic`).

use crate::error::{Error, Result};
use crate::optim::Optimizer;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Tensor};

const MODEL: &str = "model.";
const OPTIMIZER: &str = "optimizer.";
const EPOCH: &str = "meta.epoch";

fn read(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    let named = Tensor::read_safetensors(path).map_err(|e| Error::parse(path, None, format!("not a readable safetensors file: {e}")))?;
    Ok(named.into_iter().collect())
}

fn write(path: &Path, named: &[(String, Tensor)]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let cpu: Vec<(String, Tensor)> = named.iter().map(|(k, t)| (k.clone(), t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    let refs: Vec<(&str, &Tensor)> = cpu.iter().map(|(k, t)| (k.as_str(), t)).collect();
    // Replaced whole: a process killed mid-save, or a full disk, keeps the previous file; the
    // error names the file and carries libtorch's reason.
    torchbook_display::atomic::write_with(path, |temporary| {
        Tensor::write_safetensors(&refs, temporary).map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(|e| Error::io(path, e))
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

pub fn save_weights(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    write(path, &named)
}

pub fn load_weights(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let saved = read(path)?;
    load_into(vs, &saved, "", path)
}

pub fn save_checkpoint(vs: &nn::VarStore, optimizer: &Optimizer, epoch: usize, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (format!("{MODEL}{k}"), v)).collect();
    named.extend(optimizer.state_tensors().into_iter().map(|(k, v)| (format!("{OPTIMIZER}{k}"), v)));
    named.push((EPOCH.to_owned(), Tensor::from(epoch as i64)));
    write(path, &named)
}

/// Restores weights and optimizer state; returns the epoch the checkpoint was saved at.
pub fn load_checkpoint(vs: &nn::VarStore, optimizer: &mut Optimizer, path: &Path) -> Result<usize> {
    let saved = read(path)?;
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
