"""Source code of the math-verify grading child (``python -I -c <source>``).

The child of :mod:`ftdojo_gym.grading.math_grading` parses pathological model
output (it executes none: model-written *code* only runs in
:mod:`ftdojo_gym.grading.sandbox`); it starts with :data:`PRELUDE`: the reply channel is a duplicate of the
original stdout, stdout and stderr go to /dev/null (stray prints of the
libraries or of the graded code never reach the reply channel), and
``cap_memory()`` limits the address space to the current size plus 1 GiB.
"""

PRELUDE = r"""
import json, os, resource, sys
reply = os.fdopen(os.dup(1), "w")
devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(devnull, 1)
os.dup2(devnull, 2)

def cap_memory(extra=1 << 30):
    try:
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = size + extra
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError):
        pass
"""
