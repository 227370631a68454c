struct P { x: i32 }
impl P {
    fn new() -> Self { P { x: 1 } }
}
P::new().x