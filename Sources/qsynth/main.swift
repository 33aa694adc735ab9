print("qsynth: placeholder")
