let t = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
t.sum(Kind::Float)