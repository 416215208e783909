"""Scripts run in a Python process that cannot import a package: hf_hybrid, so that what they load comes from a
model's own code, or an optional extra such as gradio, to see what users without it see."""

import textwrap

REFUSE = '''
import json, sys


class Refuse:
    """An import hook under which `package` and its modules cannot be imported."""

    def __init__(self, package):
        self.package = package

    def find_spec(self, name, path=None, target=None):
        if name == self.package or name.startswith(self.package + "."):
            raise ImportError(f"No module named {name!r} (refused by the test)")
'''

HF_HYBRID_ABSENCE = '''
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


def without(package: str, body: str) -> str:
    """`body` (with `json` and `sys` at hand) after a guard that refuses to import `package`."""
    return REFUSE + f"\nsys.meta_path.insert(0, Refuse({package!r}))\n" + textwrap.dedent(body)


def without_hf_hybrid(body: str) -> str:
    """`body` (with `json`, `sys` and `hf_hybrid_absence()` at hand) after the guard that refuses hf_hybrid."""
    return without("hf_hybrid", HF_HYBRID_ABSENCE + textwrap.dedent(body))
