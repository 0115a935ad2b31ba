"""What the user brings: weights files (never unpickled) and image folders for calibration and validation."""
