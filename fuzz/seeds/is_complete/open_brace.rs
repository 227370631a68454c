fn f() {
    if x {