"""Gradio demos of tinytorch: the Copilot (load a pretrained character-level GPT, try it,
fine-tune it on your own code for a hundred steps, compare before and after, look inside) and
Level 1 (watch a tiny transformer memorize a dozen facts).

    python -m demos copilot|level1 [--checkpoint PATH_OR_REPO_ID] [--port 7860] [--host 127.0.0.1]

`demos/app.py` holds both as tabs and runs as a Hugging Face Space as it is. Importing this
package is cheap: gradio is imported by the modules that build the UI, and checkpoints load on
first use.
"""

import os


def prefer_one_blas_thread() -> None:
    """One BLAS thread unless the environment says otherwise; call it before numpy is imported
    (the entry points do: python -m demos, demos/app.py as a script, the benchmark).

    The demos' matrices are small (a batch of 8 windows of 64 characters): OpenBLAS's second
    thread saves little on an idle machine and costs a lot on a busy one (two sessions training,
    or pretraining alongside), where its threads wait for each other's cores. Figures:
    benchmarks/README.md."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def configure_process() -> None:
    """What a demo process sets once, where it starts, never on import (importing demos, as the
    tests do, changes no process-wide state).

    Keeps a training step's freed temporaries in malloc's heap for the next step instead of
    handing them back to the kernel and page-faulting them in again (see tinytorch/memory.py;
    the time it saves: benchmarks/README.md). And sets OpenBLAS's thread count at
    run time too (see prefer_one_blas_thread), for a process where numpy was imported first."""
    from tinytorch.memory import tune_malloc_on_first_use
    from tinytorch.threads import set_blas_threads, set_threads

    tune_malloc_on_first_use()  # now, not at the first backward; TINYTORCH_TUNE_MALLOC=0 still turns it off
    try:
        threads = int(os.environ.get("OPENBLAS_NUM_THREADS") or 1)
    except ValueError:
        threads = 1
    set_blas_threads(threads)
    # a fine-tune on one thread too: sessions share the cores
    if not os.environ.get("TINYTORCH_NUM_THREADS", "").strip():
        set_threads(1)
