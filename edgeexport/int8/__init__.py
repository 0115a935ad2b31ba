"""int8 quantization: the precision plan, the ONNX quantizer, the per-layer error map, and the repair ladder that ships full int8 or a flagged mixed-precision file."""
