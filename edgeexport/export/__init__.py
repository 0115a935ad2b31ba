"""The per-variant export pipeline: PyTorch → validated fp32 and int8 ONNX and TFLite files and card.json."""
