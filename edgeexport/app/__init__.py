"""model.app.tflite, the file app developers pull: its build and its checks in other runtimes (tflite-runtime, MediaPipe)."""
