"""Environment defaults of an ``edgeexport`` process, set before numpy or torch is loaded
(``edgeexport.cli`` imports this first; spawned build workers inherit them). A variable the
user has set is left as it is.

An export runs beside other work (build workers side by side, a test suite, a training):
threads that spin while they wait burn the cores the others need, for no speed-up on these
small networks.
"""
import os

# The TFLite converter's C++ logging.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# torch's OpenMP threads sleep rather than spin while they wait: a 2-variant build beside two
# busy processes took 82 s of CPU spinning, 39 s passive (alone: 40 s either way).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# numpy's OpenBLAS on one thread: the int8 error map's array work is on small tensors, where
# a second BLAS thread mostly waits. bench/export_threads.py: the TFLite error map 2.6 → 1.5 s
# of CPU, the four numpy-heavy export stages 0.71-0.79×; the same files and error map.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
