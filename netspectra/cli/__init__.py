"""The thin typer CLI: parse, load config, configure logging, hand over to the composition root."""

import os

# numpy's bundled OpenBLAS starts a thread per core when numpy is imported, ~30-40 ms of CPU in a
# 1 000-frame analyze here (bench/startup.py), and NetSpectra never calls BLAS: counting runs in
# its own kernels. One thread, unless the user chose otherwise. Set here, before any command
# imports numpy; a library user of netspectra keeps numpy's default.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# pydantic looks for its own plugins (validation observers, e.g. logfire's) by reading every
# installed distribution's entry points the first time a model validates: one more scan of the
# whole environment in every command (~12 M instructions of a 970 M `config check`, measured with
# callgrind). The CLI's validations are of its own config; a user who wants pydantic plugins to see
# them sets PYDANTIC_DISABLE_PLUGINS= (empty) or a list of the plugins to leave out.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
