fn g<T: Into<f64>>(x: T) -> f64 where T: Copy { x.into() }
let a: Vec<Vec<u8>> = vec![];