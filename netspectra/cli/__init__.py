"""The thin typer CLI: parse, load config, configure logging, hand over to the composition root."""

import os

# numpy's bundled OpenBLAS starts a thread per core when numpy is imported, ~30-40 ms of CPU in a
# 1 000-frame analyze here (bench/startup.py), and NetSpectra never calls BLAS: counting runs in
# its own kernels. One thread, unless the user chose otherwise. Set here, before any command
# imports numpy; a library user of netspectra keeps numpy's default.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
