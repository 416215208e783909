"""`--device` of predict (one paper and files), evaluate and serve, and the handler's device: `cpu` gives what the
default gives on a machine without a GPU; a device this machine lacks, or a name that is none, is refused in one line
before the model loads. (No test here runs on a GPU: the suite runs on CPU.)"""

import json

import pytest
import torch
from conftest import TINY_ABSTRACTS, TINY_LABELS, TINY_TITLES
from papers import write_papers_csv

from hf_hybrid.cli import main
from hf_hybrid.model.handler import DEVICE_VARIABLE, EndpointHandler, select_device

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="refusals of a GPU this machine lacks")


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine that says it has one CUDA GPU (nothing is run on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.fixture(scope="module")
def papers_csv(tmp_path_factory):
    return write_papers_csv(
        tmp_path_factory.mktemp("devices") / "papers.csv", n_per_class=5, labels=tuple(TINY_LABELS.values())
    )


def test_device_names_resolve_to_torch_devices(one_gpu):
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("cuda") == torch.device("cuda")
    assert select_device("cuda:0") == torch.device("cuda:0")
    assert select_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:1", "", "mps"])
def test_a_name_that_is_no_device_here_is_refused(name):
    with pytest.raises(ValueError, match=r"give cpu, cuda, cuda:N \(a GPU's index\) or auto$"):
        select_device(name)


def test_a_gpu_index_past_the_machines_gpus_is_refused(one_gpu):
    with pytest.raises(ValueError, match=r"^device 'cuda:1': this machine has 1 CUDA GPU\(s\)$"):
        select_device("cuda:1")


@NO_GPU
def test_auto_is_the_cpu_without_a_gpu():
    assert select_device("auto") == torch.device("cpu")


@NO_GPU
@pytest.mark.parametrize(
    "command",
    [
        ["predict", "--title", "t"],
        ["predict", "--input_file", "PAPERS"],
        ["evaluate", "--test_file", "PAPERS"],
        ["serve"],
    ],
)
def test_a_gpu_this_machine_lacks_is_refused_in_one_line(command, saved_model_dir, papers_csv, capsys):
    argv = [str(papers_csv) if arg == "PAPERS" else arg for arg in command]
    assert main([*argv, "--model", str(saved_model_dir), "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"hf-hybrid {command[0]}: error: --device 'cuda': no CUDA GPU is available here (torch {torch.__version__})\n"
    )


def test_the_folded_cpu_path_is_refused_on_a_gpu(one_gpu, saved_model_dir, capsys):
    argv = ["predict", "--model", str(saved_model_dir), "--title", "t", "--device", "cuda", "--fold_for_inference"]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "hf-hybrid predict: error: --fold_for_inference is the fast CPU path: on --device cuda (cuda) the model runs "
        "unfolded; give one of the two\n"
    )


def test_cpu_gives_what_the_default_gives(saved_model_dir, papers_csv, tmp_path, capsys):
    model = ["--model", str(saved_model_dir)]
    one = ["predict", *model, "--title", TINY_TITLES[0], "--abstract", TINY_ABSTRACTS[0]]
    assert main(one) == 0
    default = json.loads(capsys.readouterr().out)
    assert main([*one, "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out) == default
    for device, output in ((None, "default.jsonl"), ("cpu", "cpu.jsonl")):
        flags = [] if device is None else ["--device", device]
        argv = ["predict", *model, "--input_file", str(papers_csv), "--output_file", str(tmp_path / output)]
        assert main([*argv, *flags]) == 0
    assert (tmp_path / "cpu.jsonl").read_text() == (tmp_path / "default.jsonl").read_text()
    capsys.readouterr()
    assert main(["evaluate", *model, "--test_file", str(papers_csv)]) == 0
    default = capsys.readouterr().out
    assert main(["evaluate", *model, "--test_file", str(papers_csv), "--device", "cpu"]) == 0
    assert capsys.readouterr().out == default


def test_the_handler_takes_its_device_from_its_argument_or_the_environment(saved_model_dir, monkeypatch):
    monkeypatch.setenv(DEVICE_VARIABLE, "cpu")
    handler = EndpointHandler(str(saved_model_dir))
    assert handler.device == torch.device("cpu")
    assert handler.pipeline.model.folded_for_inference == torch.float32  # the fast CPU path
    monkeypatch.setenv(DEVICE_VARIABLE, "tpu")
    with pytest.raises(ValueError, match="^device 'tpu': give cpu"):
        EndpointHandler(str(saved_model_dir))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device 'cuda': no CUDA GPU is available here"):
            EndpointHandler(str(saved_model_dir), device="cuda")
