"""Scripts run in a Python process that cannot import hf_hybrid, so what they load comes from a model's own code."""

import textwrap

GUARD = '''
import json, sys


class RefuseHfHybrid:
    def find_spec(self, name, path=None, target=None):
        if name == "hf_hybrid" or name.startswith("hf_hybrid."):
            raise ImportError(f"{name} must not be needed to load a saved model")


sys.meta_path.insert(0, RefuseHfHybrid())


def hf_hybrid_absence():
    """Whether the guard refused hf_hybrid, and which of its modules got imported anyway (none, if it works)."""
    try:
        import hf_hybrid  # noqa: F401
        refused = False
    except ImportError:
        refused = True
    modules = sorted(m for m in sys.modules if m == "hf_hybrid" or m.startswith("hf_hybrid."))
    return {"hf_hybrid_refused": refused, "hf_hybrid_modules": modules}
'''


def without_hf_hybrid(body: str) -> str:
    """`body` (with `json`, `sys` and `hf_hybrid_absence()` at hand) after the guard that refuses hf_hybrid."""
    return GUARD + textwrap.dedent(body)
