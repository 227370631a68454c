let f = |a: i32| -> i32 { a * 2 };
(0..10).map(f).sum::<i32>()