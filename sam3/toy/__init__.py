"""sam3-toy: the shapes world and the tiny SAM 3 trained on it (the embedded default model)."""
