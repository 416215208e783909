"""The built wheel: it holds what an installed hf-hybrid reads from its own folder (the card template, the
`evaluate` metric module, the shipped model code) and the license, as real files, with the package's version."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import hf_hybrid

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "hf_hybrid", source / "hf_hybrid", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob("hf_hybrid-*.whl")
    return path


def test_the_wheel_holds_the_card_template_the_metric_module_and_the_model_code(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hf_hybrid/model_card_template.md" in names
    assert "hf_hybrid/metrics/classification_report/classification_report.py" in names
    for module in (
        "configuration_hybrid_cnn_lstm",
        "modeling_hybrid_cnn_lstm",
        "layers_hybrid_cnn_lstm",
        "loading_hybrid_cnn_lstm",
        "folding_hybrid_cnn_lstm",
        "tokenization_hybrid_cnn_lstm",
        "pipeline_arxiv_classification",
    ):
        assert f"hf_hybrid/model/{module}.py" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_the_template_in_the_wheel_is_the_text_the_package_reads(wheel):
    from hf_hybrid.model_card import TEMPLATE

    assert not TEMPLATE.is_symlink()
    assert zipfile.ZipFile(wheel).read("hf_hybrid/model_card_template.md") == TEMPLATE.read_bytes()


def test_the_wheel_has_the_version_of_hf_hybrid_version(wheel):
    assert wheel.name.startswith(f"hf_hybrid-{hf_hybrid.__version__}-")
    metadata = next(name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".dist-info/METADATA"))
    assert f"Version: {hf_hybrid.__version__}\n" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_a_push_and_the_card_do_not_import_matplotlib():
    """matplotlib is for drawing the plots; the push and the card need only the plots' file names."""
    code = (
        "import sys; import hf_hybrid.hub, hf_hybrid.model_card, hf_hybrid.plots, hf_hybrid.cli; "
        "print('matplotlib' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "False"
