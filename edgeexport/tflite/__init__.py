"""Reading and rewriting .tflite flatbuffers: inspection, metadata, uint8/pixel interfaces, the hard-swish rewrite, XNNPACK delegation, the oldest runtime a file needs."""
