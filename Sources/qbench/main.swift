print("qbench: placeholder")
