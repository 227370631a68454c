let s = "abc\"}";
let r = r#"raw "# ;