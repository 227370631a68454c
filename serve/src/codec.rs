//! Request bodies to tensors and tensors to response bodies, in the two formats of
//! `POST /v1/predict`:
//!
//! - JSON: `{"inputs": [example, …]}` where each example is nested lists of numbers of the
//!   model's per-example shape; the answer is `{"outputs": [output, …]}` likewise (a float that
//!   is not finite is written `null`, which JSON has no number for).
//! - Raw: the little-endian bytes of a C-contiguous tensor, `Content-Type:
//!   application/octet-stream`, with `X-Tensor-Shape: 4,1,28,28` (batch first) and
//!   `X-Tensor-Dtype: float32`; the answer has the same form and headers.
//!
//! Every refusal is a sentence saying where in the request, what was expected and what was
//! found; the HTTP layer turns it into a 400.

use crate::spec::{dtype_name, join, parse_shape, ModelSpec};
use std::fmt::Write;
use tch::{Kind, Tensor};

#[cfg(target_endian = "big")]
compile_error!("raw tensors are little-endian bytes, copied as they are: big-endian hosts are not supported");

pub const SHAPE_HEADER: &str = "x-tensor-shape";
pub const DTYPE_HEADER: &str = "x-tensor-dtype";

/// A batch decoded from JSON, in the model's input kind.
pub fn decode_json(body: &[u8], spec: &ModelSpec) -> Result<Tensor, String> {
    let integer = !is_float(spec.input_kind);
    let parsed = crate::json_input::parse(body, &spec.input_shape, integer)?;
    let mut dims = vec![parsed.examples as i64];
    dims.extend_from_slice(&spec.input_shape);
    let tensor = if integer { Tensor::from_slice(&parsed.ints) } else { Tensor::from_slice(&parsed.floats) };
    let tensor = tensor.f_reshape(dims.as_slice()).map_err(|e| first_line(&e.to_string()))?;
    tensor.f_to_kind(spec.input_kind).map_err(|e| first_line(&e.to_string()))
}

/// A batch from raw bytes and the two headers (already read as text; `None` when absent).
pub fn decode_raw(body: &[u8], shape: Option<&str>, dtype: Option<&str>, spec: &ModelSpec) -> Result<Tensor, String> {
    let expected_dtype = dtype_name(spec.input_kind);
    let Some(dtype) = dtype else {
        return Err(format!("expected a header X-Tensor-Dtype: {expected_dtype}, found none"));
    };
    if dtype.trim() != expected_dtype {
        return Err(format!("X-Tensor-Dtype: expected {expected_dtype} (the model's input), found {dtype:?}"));
    }
    let example = join(&spec.input_shape);
    let Some(shape) = shape else {
        return Err(format!("expected a header X-Tensor-Shape: N,{example} (batch first), found none"));
    };
    let dims = parse_shape(shape).map_err(|e| format!("X-Tensor-Shape: {e}"))?;
    if dims.len() != spec.input_shape.len() + 1 || dims[1..] != spec.input_shape[..] || dims[0] < 1 {
        return Err(format!("X-Tensor-Shape: expected N,{example} with N ≥ 1 (batch first), found {shape:?}"));
    }
    let numel = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d as usize)).ok_or("X-Tensor-Shape: too large")?;
    let expected_bytes = numel.checked_mul(spec.input_kind.elt_size_in_bytes()).ok_or("X-Tensor-Shape: too large")?;
    if body.len() != expected_bytes {
        return Err(format!(
            "the body: expected {expected_bytes} bytes ({numel} {expected_dtype} values for shape [{}]), found {} bytes",
            join(&dims),
            body.len()
        ));
    }
    Tensor::f_from_data_size(body, &dims, spec.input_kind).map_err(|e| first_line(&e.to_string()))
}

/// `{"outputs": […]}` for a batch of outputs (on the CPU).
pub fn encode_json(out: &Tensor) -> Result<Vec<u8>, String> {
    let dims = out.size();
    let flat = out.f_reshape([-1]).map_err(|e| e.to_string())?;
    let mut text = String::with_capacity(16 + 12 * flat.numel());
    text.push_str("{\"outputs\": ");
    if out.is_floating_point() {
        let values = Vec::<f32>::try_from(&flat.to_kind(Kind::Float)).map_err(|e| e.to_string())?;
        nest(&mut text, &dims, &values, &mut |text, v: &f32| {
            if v.is_finite() {
                let _ = write!(text, "{v:?}");
            } else {
                text.push_str("null");
            }
        });
    } else {
        let values = Vec::<i64>::try_from(&flat.to_kind(Kind::Int64)).map_err(|e| e.to_string())?;
        nest(&mut text, &dims, &values, &mut |text, v: &i64| {
            let _ = write!(text, "{v}");
        });
    }
    text.push_str("}\n");
    Ok(text.into_bytes())
}

fn nest<T>(text: &mut String, dims: &[i64], values: &[T], write_one: &mut impl FnMut(&mut String, &T)) {
    match dims.split_first() {
        None => write_one(text, &values[0]),
        Some((&n, inner)) => {
            let step = inner.iter().product::<i64>() as usize;
            text.push('[');
            for i in 0..n as usize {
                if i > 0 {
                    text.push_str(", ");
                }
                nest(text, inner, &values[i * step..(i + 1) * step], write_one);
            }
            text.push(']');
        }
    }
}

/// The raw bytes of a batch of outputs, with the values of the shape and dtype headers.
pub fn encode_raw(out: &Tensor) -> Result<(Vec<u8>, String, &'static str), String> {
    let out = out.contiguous();
    let numel = out.numel();
    let mut bytes = vec![0u8; numel * out.kind().elt_size_in_bytes()];
    out.f_copy_data_u8(&mut bytes, numel).map_err(|e| first_line(&e.to_string()))?;
    let shape = out.size().iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    Ok((bytes, shape, dtype_name(out.kind())))
}

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

/// libtorch's messages carry a C++ backtrace after the first line.
pub fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: &[i64], kind: Kind) -> ModelSpec {
        ModelSpec { input_shape: shape.to_vec(), input_kind: kind, output_shape: None, fixed_batch: None }
    }

    #[test]
    fn json_examples_become_a_batch_and_mistakes_say_where() {
        let s = spec(&[2, 3], Kind::Float);
        let t = decode_json(br#"{"inputs": [[[1,2,3],[4,5,6]], [[0,0,0],[0,0,1.5]]]}"#, &s).unwrap();
        assert_eq!(t.size(), [2, 2, 3]);
        assert_eq!(t.double_value(&[1, 1, 2]), 1.5);
        let err = |body: &str| decode_json(body.as_bytes(), &s).unwrap_err();
        assert!(err("{").starts_with("the body is not valid JSON"));
        assert!(err("[1]").contains("expected a JSON object {\"inputs\": [example, …]} with examples of shape [2, 3], found a list"));
        assert!(err(r#"{"outputs": 1}"#).ends_with("found an object without \"inputs\""));
        assert_eq!(err(r#"{"inputs": {}}"#), "inputs: expected a list of examples, found an object");
        assert_eq!(err(r#"{"inputs": [[[1,2,3],[4,5,6,7]]]}"#), "inputs[0][1]: expected a list of 3 (an example has shape [2, 3]), found a longer list");
        assert_eq!(err(r#"{"inputs": [[[1,2,3],[4,5,6]], [[1,2,3],[4,5,[6]]]]}"#), "inputs[1][1][2]: expected a number, found a list");
        assert_eq!(err(r#"{"inputs": [[1, 2]]}"#), "inputs[0][0]: expected a list of 3 (an example has shape [2, 3]), found the number 1");
        assert!(err(r#"{"inputs": [[[1,2,3],[4,5,6]]]} x"#).starts_with("the body is not valid JSON: trailing characters"));
        assert_eq!(err(r#"{"inputs": []}"#), "inputs: expected at least one example, found an empty list");
        assert_eq!(err(r#"{"inputs": [[[1,2,3],[4,5]]]}"#), "inputs[0][1]: expected a list of 3 (an example has shape [2, 3]), found a list of 2");
        assert_eq!(err(r#"{"inputs": [[[1,2,3],[4,5,"x"]]]}"#), "inputs[0][1][2]: expected a number, found the string \"x\"");
        let tokens = spec(&[2], Kind::Int64);
        assert_eq!(decode_json(br#"{"inputs": [[1, 2]]}"#, &tokens).unwrap().kind(), Kind::Int64);
        assert!(decode_json(br#"{"inputs": [[1, 2.5]]}"#, &tokens).unwrap_err().contains("expected an integer"));
    }

    #[test]
    fn raw_tensors_need_the_right_headers_and_length() {
        let s = spec(&[2], Kind::Float);
        let body: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = decode_raw(&body, Some("2,2"), Some("float32"), &s).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t.reshape([-1])).unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(decode_raw(&body, Some("2,2"), Some("float64"), &s).unwrap_err(), "X-Tensor-Dtype: expected float32 (the model's input), found \"float64\"");
        assert!(decode_raw(&body, Some("2,3"), Some("float32"), &s).unwrap_err().starts_with("X-Tensor-Shape: expected N,2"));
        assert!(decode_raw(&body, Some("3,2"), Some("float32"), &s).unwrap_err().contains("expected 24 bytes"));
        assert!(decode_raw(&body, None, Some("float32"), &s).unwrap_err().contains("found none"));
        assert!(decode_raw(&body, Some("a,b"), Some("float32"), &s).unwrap_err().contains("sizes separated by commas"));
    }

    #[test]
    fn outputs_are_nested_lists_or_raw_bytes() {
        let out = Tensor::from_slice(&[0.5f32, 1.0, f32::NAN, -2.0]).reshape([2, 2]);
        assert_eq!(String::from_utf8(encode_json(&out).unwrap()).unwrap(), "{\"outputs\": [[0.5, 1.0], [null, -2.0]]}\n");
        let (bytes, shape, dtype) = encode_raw(&out).unwrap();
        assert_eq!((bytes.len(), shape.as_str(), dtype), (16, "2,2", "float32"));
    }
}
