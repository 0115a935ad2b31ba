"""Measurement: profiling files with onnxruntime/LiteRT here or on a board over SSH, and the board's content-addressed model cache."""
