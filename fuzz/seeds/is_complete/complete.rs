let x = 1 + 1;
x