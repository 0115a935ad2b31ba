"""edgeexport: MobileNets from PyTorch to ONNX and int8 TFLite, measured on the edge."""
__version__ = "0.1.0"
