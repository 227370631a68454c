macro_rules! m { ($x:expr) => { $x + 1 }; }
m!(2)