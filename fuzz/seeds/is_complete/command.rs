:dep rand = "0.8"
:vars