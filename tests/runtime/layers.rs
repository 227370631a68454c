//! Every layer's output shape and parameter count, checked against PyTorch's formulas, and
//! shape mistakes reported as errors that say what was expected.

use torchbook::prelude::*;

fn built(net: Sequential, input: &[i64]) -> Model {
    Model::build(Box::new(net), input, Kind::Float, Device::Cpu).unwrap()
}

/// (output shape, parameter count) of a single layer on `input`.
fn one(layer: impl Layer + 'static, input: &[i64]) -> (Vec<i64>, i64) {
    let model = built(Sequential::new().add(layer), input);
    let s = model.summary();
    (s.rows[0].1.clone(), s.rows[0].2)
}

fn one_tokens(layer: impl Layer + 'static, input: &[i64]) -> (Vec<i64>, i64) {
    let model = Model::build(Box::new(Sequential::new().add(layer)), input, Kind::Int64, Device::Cpu).unwrap();
    let s = model.summary();
    (s.rows[0].1.clone(), s.rows[0].2)
}

#[test]
fn dense_and_activations() {
    assert_eq!(one(Dense::new(10), &[784]), (vec![10], 7850));
    assert_eq!(one(Dense::new(10).no_bias(), &[784]), (vec![10], 7840));
    assert_eq!(one(Dense::new(4), &[5, 3]), (vec![5, 4], 16));
    for (shape, params) in [one(ReLU, &[7]), one(GELU, &[7]), one(Sigmoid, &[7]), one(Tanh, &[7]), one(Softmax::default(), &[7]), one(LeakyReLU(0.2), &[7]), one(Dropout(0.5), &[7])] {
        assert_eq!((shape, params), (vec![7], 0));
    }
    assert_eq!(one(Flatten, &[8, 13, 13]), (vec![1352], 0));
}

#[test]
fn convolutions_and_pooling() {
    assert_eq!(one(Conv2d::new(8, 3), &[1, 28, 28]), (vec![8, 26, 26], 80));
    assert_eq!(one(Conv2d::new(8, 3).same(), &[3, 28, 28]), (vec![8, 28, 28], 8 * 3 * 9 + 8));
    assert_eq!(one(Conv2d::new(4, 3).stride(2).padding(1), &[1, 28, 28]), (vec![4, 14, 14], 40));
    assert_eq!(one(Conv1d::new(4, 3), &[2, 10]), (vec![4, 8], 28));
    assert_eq!(one(MaxPool2d::new(2), &[8, 26, 26]), (vec![8, 13, 13], 0));
    assert_eq!(one(AvgPool2d::new(2), &[8, 26, 26]), (vec![8, 13, 13], 0));
    assert_eq!(one(GlobalAvgPool, &[8, 13, 13]), (vec![8], 0));
}

#[test]
fn normalisation() {
    let model = built(Sequential::new().add(BatchNorm2d::new()), &[6, 4, 4]);
    let s = model.summary();
    assert_eq!((s.rows[0].1.clone(), s.rows[0].2), (vec![6, 4, 4], 24), "weights, biases, running stats");
    assert_eq!((s.total, s.trainable), (24, 12));
    assert_eq!(one(BatchNorm1d::new(), &[6]), (vec![6], 24));
    assert_eq!(one(LayerNorm::new(), &[5, 8]), (vec![5, 8], 16));
}

#[test]
fn recurrent_and_embedding() {
    assert_eq!(one(LSTM::new(16), &[5, 8]), (vec![16], 1664));
    assert_eq!(one(LSTM::new(16).bidirectional(), &[5, 8]), (vec![32], 3328));
    assert_eq!(one(LSTM::new(16).return_sequences(), &[5, 8]), (vec![5, 16], 1664));
    assert_eq!(one(GRU::new(16), &[5, 8]), (vec![16], 1248));
    assert_eq!(one_tokens(Embedding::new(100, 8), &[5]), (vec![5, 8], 800));
}

#[test]
fn attention() {
    assert_eq!(one(MultiHeadAttention::new(8, 2), &[5, 8]), (vec![5, 8], 288));
    assert_eq!(one(TransformerEncoderLayer::new(8, 2, 32), &[5, 8]), (vec![5, 8], 872));
    let err = Model::build(Box::new(Sequential::new().add(MultiHeadAttention::new(8, 3))), &[5, 8], Kind::Float, Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("multiple of heads"), "{err}");
}

#[test]
fn summary_table_and_totals() {
    let model = built(
        Sequential::new().add(Conv2d::new(4, 3)).add(ReLU).add(MaxPool2d::new(2)).add(Flatten).add(Dense::new(10)),
        &[1, 10, 10],
    );
    let s = model.summary();
    assert_eq!(s.total, 40 + 4 * 4 * 4 * 10 + 10);
    let text = s.to_string();
    assert!(text.contains("Conv2d(4, k=3, s=1, p=0)") && text.contains("(None, 4, 8, 8)"), "{text}");
    assert!(text.contains("Total params: 690"), "{text}");
}

#[test]
fn closures_and_custom_layers_compose() {
    #[derive(Debug)]
    struct Residual(Dense);
    impl Layer for Residual {
        fn name(&self) -> String {
            "Residual".into()
        }
        fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> TorchbookResult<()> {
            self.0.build(vs, sample)
        }
        fn forward(&self, xs: &Tensor, train: bool) -> TorchbookResult<Tensor> {
            Ok(xs + self.0.forward(xs, train)?)
        }
    }
    let model = built(Sequential::new().add(Residual(Dense::new(6))).add(Lambda::new("double", |x| x * 2)), &[6]);
    let s = model.summary();
    assert_eq!(s.rows[0].2, 42);
    assert_eq!(s.rows[1].0, "Lambda(double)");
    let out = model.forward(&Tensor::ones([3, 6], (Kind::Float, Device::Cpu)), false).unwrap();
    assert_eq!(out.size(), [3, 6]);
}

#[test]
fn shape_mistakes_are_errors_that_explain() {
    let model = built(Sequential::new().add(Dense::new(3)), &[4]);
    let err = model.forward(&Tensor::zeros([2, 5], (Kind::Float, Device::Cpu)), false).unwrap_err();
    assert_eq!(err.to_string(), "model input: expected shape [batch, 4], found [2, 5]");
    let mut conv = Conv2d::new(2, 3);
    let err = conv
        .build(&nn::VarStore::new(Device::Cpu).root(), &Tensor::zeros([2, 10], (Kind::Float, Device::Cpu)))
        .unwrap_err();
    assert!(err.to_string().contains("[batch, channels, height, width]"), "{err}");
    let err = Dense::new(3).forward(&Tensor::zeros([1, 1], (Kind::Float, Device::Cpu)), false).unwrap_err();
    assert!(err.to_string().contains("no parameters yet"), "{err}");
    let tokens = Model::build(Box::new(Sequential::new().add(Embedding::new(10, 4))), &[3], Kind::Int64, Device::Cpu).unwrap();
    let err = tokens.forward(&Tensor::from_slice2(&[[1i64, 2, 30]]), false).unwrap_err();
    assert!(err.to_string().contains("token ids must be in 0..10"), "{err}");
    let bad = Lambda::new("bad", |x| x.matmul(&Tensor::zeros([7, 7], (Kind::Float, Device::Cpu))));
    let err = bad.forward(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), false).unwrap_err();
    assert!(err.to_string().starts_with("Lambda(bad) failed"), "{err}");
}
