"""COCO datasets: the folder layout, record checks and repairs, mask decoding, target sets, the loader."""
