"""Run .tflite files in another Python's TFLite interpreter (e.g. tflite-runtime 2.14 in its
own venv with numpy < 2): `python runtime_probe.py INPUTS.npz OUT_DIR MODEL...`.

Standalone on purpose (standard library, numpy and tflite_runtime only): it is executed by an
interpreter that cannot import edgeexport. INPUTS.npz holds one array per model file name, in
that model's input dtype, fed as stored; the raw outputs go to OUT_DIR/<model file name>.npy
and the runtime's version to OUT_DIR/version.txt.
"""
import sys
from pathlib import Path

import numpy as np


def main(inputs_npz: str, out_dir: str, *models: str) -> None:
    from tflite_runtime import __version__
    from tflite_runtime.interpreter import Interpreter
    arrays = np.load(inputs_npz)
    out = Path(out_dir)
    for model in models:
        name = Path(model).name
        interpreter = Interpreter(model_path=model, num_threads=1)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        index = interpreter.get_output_details()[0]["index"]
        results = []
        for x in arrays[name]:
            interpreter.set_tensor(inp["index"], x[None])
            interpreter.invoke()
            results.append(interpreter.get_tensor(index).copy())
        np.save(out / f"{name}.npy", np.concatenate(results))
    (out / "version.txt").write_text(__version__)


if __name__ == "__main__":
    main(*sys.argv[1:])
