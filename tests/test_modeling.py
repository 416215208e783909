"""HybridCNNLSTMModel / HybridCNNLSTMForSequenceClassification with tiny configs."""

import collections
import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import logging

from hf_hybrid import (
    HybridCNNLSTMConfig,
    HybridCNNLSTMForSequenceClassification,
    HybridCNNLSTMModel,
)
from hf_hybrid.model.modeling_hybrid_cnn_lstm import weights_sha256
from hf_hybrid.model.pipeline_arxiv_classification import CUSTOM_PIPELINE

FIRST_WORD_ID = 2  # 0 is <PAD>, 1 is <UNK>


def word_ids(*shape, vocab_size=30, seed=0):
    """Random ids of real words (never padding)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(FIRST_WORD_ID, vocab_size, shape, generator=generator)


def right_pad(rows):
    """Pads lists of ids with 0 on the right; returns (ids, mask)."""
    length = max(len(row) for row in rows)
    ids = torch.tensor([row + [0] * (length - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (length - len(row)) for row in rows])
    return ids, mask


def build(config, seed=0):
    torch.manual_seed(seed)
    return HybridCNNLSTMForSequenceClassification(config).eval()


# --- the notebook crashed on even kernel widths: every width and every abstract length must work ---


@pytest.mark.parametrize("kernel_sizes", [[3, 4, 5], [2, 3, 4, 5], [4], [1, 6]])
def test_every_kernel_width_and_abstract_length_gives_logits_per_paper(make_tiny_config, kernel_sizes):
    config = make_tiny_config(kernel_sizes=kernel_sizes, max_abstract_length=12)
    model = build(config)
    title = word_ids(2, 3, vocab_size=config.vocab_size)
    with torch.no_grad():
        for length in range(1, config.max_abstract_length + 1):
            abstract = word_ids(2, length, vocab_size=config.vocab_size, seed=length)
            out = model(title_input_ids=title, abstract_input_ids=abstract, output_attentions=True)
            assert out.logits.shape == (2, config.num_labels), f"abstract length {length}"
            assert out.abstract_attention.shape == (2, length), f"abstract length {length}"


def test_full_length_abstract_with_default_kernel_sizes(make_tiny_config):
    config = make_tiny_config(kernel_sizes=[3, 4, 5], max_title_length=30, max_abstract_length=200)
    model = build(config)
    title = word_ids(2, 30, vocab_size=config.vocab_size)
    abstract = word_ids(2, 200, vocab_size=config.vocab_size, seed=1)
    with torch.no_grad():
        out = model(title_input_ids=title, abstract_input_ids=abstract, output_attentions=True)
    assert out.logits.shape == (2, 3)
    assert out.abstract_attention.shape == (2, 200)


# --- padding must not change an item's result (the notebook's conv and LSTM read the padding) ---


@pytest.mark.parametrize("kernel_sizes", [[3, 4, 5], [2, 3, 4, 5]])
def test_item_gives_same_logits_and_attention_alone_and_batched_with_longer_item(make_tiny_config, kernel_sizes):
    config = make_tiny_config(kernel_sizes=kernel_sizes)
    model = build(config)
    short_title, short_abstract = word_ids(3, seed=1).tolist(), word_ids(5, seed=2).tolist()
    long_title, long_abstract = word_ids(8, seed=3).tolist(), word_ids(16, seed=4).tolist()

    with torch.no_grad():
        alone = model(
            title_input_ids=torch.tensor([short_title]),
            abstract_input_ids=torch.tensor([short_abstract]),
            output_attentions=True,
        )
        title_ids, title_mask = right_pad([short_title, long_title])
        abstract_ids, abstract_mask = right_pad([short_abstract, long_abstract])
        batched = model(
            title_input_ids=title_ids,
            abstract_input_ids=abstract_ids,
            title_attention_mask=title_mask,
            abstract_attention_mask=abstract_mask,
            output_attentions=True,
        )

    torch.testing.assert_close(batched.logits[:1], alone.logits, atol=1e-5, rtol=1e-5)
    title_attention, abstract_attention = batched.title_attention, batched.abstract_attention
    torch.testing.assert_close(title_attention[:1, :3], alone.title_attention, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(abstract_attention[:1, :5], alone.abstract_attention, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.fusion_weights[:1], alone.fusion_weights, atol=1e-5, rtol=1e-5)
    # Padding gets exactly zero attention.
    assert torch.all(title_attention[0, 3:] == 0)
    assert torch.all(abstract_attention[0, 5:] == 0)


def test_ids_under_a_zero_mask_do_not_matter(tiny_model):
    """Padding with word ids instead of <PAD> (masked out) changes nothing: the mask, not the id, decides."""
    title_ids, title_mask = right_pad([[5, 6, 7], [8, 9, 10, 11, 12]])
    abstract_ids, abstract_mask = right_pad([[10, 11], [12, 13, 14, 15, 16, 17]])
    noisy_title = torch.where(title_mask.bool(), title_ids, word_ids(*title_ids.shape, seed=5))
    noisy_abstract = torch.where(abstract_mask.bool(), abstract_ids, word_ids(*abstract_ids.shape, seed=6))
    masks = dict(title_attention_mask=title_mask, abstract_attention_mask=abstract_mask)
    with torch.no_grad():
        clean = tiny_model(title_input_ids=title_ids, abstract_input_ids=abstract_ids, **masks).logits
        noisy = tiny_model(title_input_ids=noisy_title, abstract_input_ids=noisy_abstract, **masks).logits
    torch.testing.assert_close(noisy, clean, atol=1e-5, rtol=1e-5)


def test_missing_attention_masks_are_derived_from_padding_ids(tiny_model):
    title_ids, title_mask = right_pad([[5, 6, 7], [8, 9]])
    abstract_ids, abstract_mask = right_pad([[10, 11], [12, 13, 14, 15]])
    with torch.no_grad():
        with_masks = tiny_model(
            title_input_ids=title_ids,
            abstract_input_ids=abstract_ids,
            title_attention_mask=title_mask,
            abstract_attention_mask=abstract_mask,
        ).logits
        without_masks = tiny_model(title_input_ids=title_ids, abstract_input_ids=abstract_ids).logits
    torch.testing.assert_close(without_masks, with_masks, atol=0, rtol=0)


# --- loss ---


def test_loss_is_cross_entropy_of_the_logits(tiny_model):
    labels = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        out = tiny_model(title_input_ids=word_ids(4, 5), abstract_input_ids=word_ids(4, 9, seed=1), labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))


def test_class_weights_weigh_the_cross_entropy(make_tiny_config):
    weights = [3.0, 1.0, 0.5]
    weighted = build(make_tiny_config(class_weights=weights))
    plain = build(make_tiny_config())
    labels = torch.tensor([0, 1, 2, 0])
    inputs = dict(title_input_ids=word_ids(4, 5), abstract_input_ids=word_ids(4, 9, seed=1), labels=labels)
    with torch.no_grad():
        out = weighted(**inputs)
        plain_loss = plain(**inputs).loss
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels, weight=torch.tensor(weights)))
    # Same seed, same weights: only the class weights differ.
    torch.testing.assert_close(plain(**inputs).logits, out.logits)
    assert not torch.isclose(out.loss, plain_loss)


# --- outputs ---


def test_attention_maps_and_fusion_weights_are_named_outputs(tiny_model):
    title_ids, title_mask = right_pad([[5, 6, 7], [8, 9, 10, 11, 12]])
    abstract_ids, abstract_mask = right_pad([[10, 11, 12, 13, 14, 15, 16], [13, 14]])
    with torch.no_grad():
        out = tiny_model(
            title_input_ids=title_ids,
            abstract_input_ids=abstract_ids,
            title_attention_mask=title_mask,
            abstract_attention_mask=abstract_mask,
            output_attentions=True,
        )
    title_attention, abstract_attention, fusion = out.title_attention, out.abstract_attention, out.fusion_weights
    assert "attentions" not in out  # transformers' per-layer (batch, heads, query, key) maps: this model has none
    assert title_attention.shape == (2, 5)
    assert abstract_attention.shape == (2, 7)
    assert fusion.shape == (2, 2)
    ones = torch.ones(2)
    torch.testing.assert_close((title_attention * title_mask).sum(dim=1), ones)
    torch.testing.assert_close((abstract_attention * abstract_mask).sum(dim=1), ones)
    torch.testing.assert_close(fusion.sum(dim=1), ones)
    assert torch.all(title_attention[title_mask == 0] == 0)
    assert torch.all(abstract_attention[abstract_mask == 0] == 0)


def test_attention_maps_are_none_unless_asked(tiny_model):
    with torch.no_grad():
        out = tiny_model(title_input_ids=word_ids(1, 3), abstract_input_ids=word_ids(1, 4))
    assert out.title_attention is None and out.abstract_attention is None and out.fusion_weights is None
    assert list(out.keys()) == ["logits"]


def test_return_dict_false_gives_a_tuple(tiny_model):
    inputs = dict(title_input_ids=word_ids(2, 3), abstract_input_ids=word_ids(2, 6))
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        as_dict = tiny_model(**inputs, labels=labels)
        as_tuple = tiny_model(**inputs, labels=labels, return_dict=False)
        logits_only = tiny_model(**inputs, return_dict=False)
        with_maps = tiny_model(**inputs, output_attentions=True, return_dict=False)
        encoder_tuple = tiny_model.hybrid(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and isinstance(logits_only, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)
    torch.testing.assert_close(logits_only[0], as_dict.logits)
    assert len(logits_only) == 1
    # logits, title attention, abstract attention, fusion weights: the order of the output's fields
    assert [tuple(t.shape) for t in with_maps] == [(2, 3), (2, 3), (2, 6), (2, 2)]
    assert isinstance(encoder_tuple, tuple) and len(encoder_tuple) == 4


def test_encoder_returns_fused_representation_of_both_branches(tiny_config):
    torch.manual_seed(0)
    encoder = HybridCNNLSTMModel(tiny_config).eval()
    with torch.no_grad():
        out = encoder(title_input_ids=word_ids(2, 4), abstract_input_ids=word_ids(2, 9))
    width = 2 * tiny_config.lstm_hidden + tiny_config.num_filters * len(tiny_config.kernel_sizes)
    assert width == 40
    assert out.fused_representation.shape == (2, width)
    assert encoder.hidden_size == width
    torch.testing.assert_close(out.fusion_weights.sum(dim=1), torch.ones(2))


# --- initialisation: the notebook's scheme ---


def test_initialisation_is_the_notebooks():
    config = HybridCNNLSTMConfig(
        vocab_size=500,
        embed_dim=64,
        num_filters=128,
        kernel_sizes=[5],
        lstm_hidden=32,
        classifier_hidden_sizes=[256],
        id2label={0: "a", 1: "b", 2: "c"},
        wide_branch=False,
    )
    torch.manual_seed(0)
    model = HybridCNNLSTMForSequenceClassification(config)

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6  # two attentions, two fusion scores, two head layers
    for linear in linears:
        assert torch.all(linear.bias == 0)
        fan_out, fan_in = linear.weight.shape
        assert linear.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))  # Xavier uniform bound

    (conv,) = model.hybrid.abstract_encoder.convs
    assert torch.all(conv.bias == 0)
    # Kaiming normal, fan_out mode: sqrt(2 / (128 * 5)) = 0.0559; fan_in would give 0.079, PyTorch's default 0.032.
    expected_std = math.sqrt(2 / (config.num_filters * 5))
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)

    embedding = model.hybrid.embedding.weight
    assert torch.all(embedding[config.pad_token_id] == 0)
    assert embedding[1:].std().item() == pytest.approx(1.0, rel=0.05)  # N(0, 1), PyTorch's default

    bound = config.lstm_hidden**-0.5
    for parameter in model.hybrid.title_encoder.lstm.parameters():
        assert parameter.abs().max() <= bound

    for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm1d)):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


# --- empty fields ---


@pytest.mark.parametrize("empty", ["title", "abstract"])
def test_empty_field_gives_finite_logits(tiny_model, empty):
    lengths = {"title": 4, "abstract": 7, empty: 0}
    with torch.no_grad():
        out = tiny_model(
            title_input_ids=word_ids(2, lengths["title"]),
            abstract_input_ids=word_ids(2, lengths["abstract"], seed=1),
            output_attentions=True,
        )
    assert out.logits.shape == (2, 3)
    assert torch.isfinite(out.logits).all()
    assert torch.isfinite(out.fusion_weights).all()


def test_a_batch_without_abstracts_gives_finite_logits(tiny_model, tiny_tokenizer):
    inputs = tiny_tokenizer(["deep networks", "attention is all you need"], padding=True, return_tensors="pt")
    for key in ("abstract_input_ids", "abstract_attention_mask"):  # no abstract position at all
        inputs[key] = inputs[key][:, :0]
    with torch.no_grad():
        logits = tiny_model(**inputs).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_one_empty_title_in_a_batch_gives_finite_logits_and_no_attention(tiny_model):
    title_ids, title_mask = right_pad([[], [5, 6, 7]])
    with torch.no_grad():
        out = tiny_model(
            title_input_ids=title_ids,
            title_attention_mask=title_mask,
            abstract_input_ids=word_ids(2, 6),
            output_attentions=True,
        )
    assert torch.isfinite(out.logits).all()
    assert torch.all(out.title_attention[0] == 0)


# --- training signal ---


def test_gradients_reach_the_embedding_through_both_branches(tiny_model):
    title_words, abstract_words = [2, 3, 4], [10, 11, 12, 13, 14]
    out = tiny_model(
        title_input_ids=torch.tensor([title_words, title_words]),
        abstract_input_ids=torch.tensor([abstract_words, abstract_words[::-1]]),
        labels=torch.tensor([0, 2]),
    )
    out.loss.backward()
    grad = tiny_model.hybrid.embedding.weight.grad
    for word in title_words + abstract_words:
        assert grad[word].abs().sum() > 0, f"no gradient for word id {word}"
    assert torch.all(grad[0] == 0)  # <PAD>
    assert torch.all(grad[20:] == 0)  # words not in the batch


# --- save / load ---


def test_save_and_reload_gives_identical_logits_from_safetensors_only(saved_model, tmp_path):
    saved_model.save_pretrained(tmp_path)
    names = {path.name for path in tmp_path.iterdir()}
    assert "model.safetensors" in names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]

    reloaded = HybridCNNLSTMForSequenceClassification.from_pretrained(tmp_path).eval()
    reloaded_state = reloaded.state_dict()
    assert reloaded_state.keys() == saved_model.state_dict().keys()
    for name, tensor in saved_model.state_dict().items():
        assert torch.equal(reloaded_state[name], tensor), name
    # The weights are bitwise equal, but CPU matmul kernels may round differently for the memory-mapped
    # (not 64-byte aligned) tensors of a loaded model, hence a tolerance of a few ulps on the logits.
    inputs = dict(title_input_ids=word_ids(3, 5), abstract_input_ids=word_ids(3, 11, seed=1))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, saved_model(**inputs).logits, atol=1e-6, rtol=1e-6)


# --- trained further: BatchNorm statistics, calibration, the pipeline a saved folder declares ---


def batch_norm_statistics(model) -> list[torch.Tensor]:
    return [
        tensor.clone()
        for module in model.modules()
        if isinstance(module, nn.BatchNorm1d)
        for tensor in (module.running_mean, module.running_var)
    ]


def forward_in_training_mode(model):
    model.train()
    model(title_input_ids=word_ids(4, 5), abstract_input_ids=word_ids(4, 11, seed=1))


def test_a_loaded_model_keeps_its_trained_batch_norm_statistics_when_trained_further(saved_model_dir):
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(saved_model_dir)
    assert model.keep_batch_norm_statistics
    before = batch_norm_statistics(model)
    forward_in_training_mode(model)
    assert all(torch.equal(a, b) for a, b in zip(batch_norm_statistics(model), before))
    assert model.training and model.classifier[1].training  # dropout is on, as in any training
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    model.keep_batch_norm_statistics = False
    forward_in_training_mode(model)
    assert not torch.equal(batch_norm_statistics(model)[0], before[0])


def test_a_new_model_and_one_saved_untrained_estimate_their_batch_norm_statistics(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)  # its statistics were never estimated
    for model in (tiny_model, HybridCNNLSTMForSequenceClassification.from_pretrained(tmp_path)):
        assert not model.keep_batch_norm_statistics
        before = batch_norm_statistics(model)
        forward_in_training_mode(model)
        assert not torch.equal(batch_norm_statistics(model)[0], before[0])


def test_saving_the_calibrated_weights_keeps_the_calibration(saved_model, tmp_path):
    saved_model.save_pretrained(tmp_path)
    reloaded = HybridCNNLSTMForSequenceClassification.from_pretrained(tmp_path)
    assert reloaded.config.calibration_temperature == saved_model.config.calibration_temperature != 1.0
    assert reloaded.config.calibrated_weights_sha256 == weights_sha256(reloaded) == weights_sha256(saved_model)
    reloaded.save_pretrained(tmp_path / "again")
    again = HybridCNNLSTMConfig.from_pretrained(tmp_path / "again")
    assert again.calibration_temperature == saved_model.config.calibration_temperature


def test_saving_changed_weights_resets_the_calibration_with_a_warning(saved_model_dir, tmp_path, caplog):
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(saved_model_dir)
    model.config.deep_weight = 0.5  # chosen on validation, like the temperature: it holds for these weights only
    with torch.no_grad():
        model.classifier[-1].bias.add_(0.1)  # as any optimizer step does
    logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            model.save_pretrained(tmp_path)
    finally:
        logging.disable_propagation()
    assert any("the weights changed after the calibration" in record.message for record in caplog.records)
    saved = HybridCNNLSTMConfig.from_pretrained(tmp_path)
    assert (saved.calibration_temperature, saved.label_thresholds, saved.calibrated_weights_sha256) == (1.0, None, None)
    assert saved.deep_weight == 1.0
    assert model.config.calibration_temperature == 1.0  # the model in memory no longer claims it either


def test_a_calibrated_folder_saved_without_a_digest_is_taken_as_calibrated_for_its_weights(saved_model_dir, tmp_path):
    shutil.copytree(saved_model_dir, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["calibrated_weights_sha256"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = HybridCNNLSTMForSequenceClassification.from_pretrained(tmp_path)
    assert model.config.calibrated_weights_sha256 == weights_sha256(model)


def test_any_saved_model_declares_and_ships_the_arxiv_classification_pipeline(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)  # the model alone, as a Trainer saves it
    declared = json.loads((tmp_path / "config.json").read_text())["custom_pipelines"]
    assert declared == {"arxiv-classification": CUSTOM_PIPELINE}
    assert (tmp_path / "pipeline_arxiv_classification.py").is_file()


# --- the notebook's function ---


def notebook_weights_for_hf_hybrid(notebook_state: dict) -> dict:
    """The notebook model's state dict under hf-hybrid's parameter names."""
    renames = [
        ("embedding.", "hybrid.embedding."),
        ("convs.", "hybrid.abstract_encoder.convs."),
        ("conv_bn.", "hybrid.abstract_encoder.norms."),
        ("cnn_attention.", "hybrid.abstract_encoder."),
        ("lstm_attention.", "hybrid.title_encoder."),
        ("fusion.title_weight.", "hybrid.fusion.title_score."),
        ("fusion.abstract_weight.", "hybrid.fusion.abstract_score."),
        ("classifier.", "classifier."),
    ]
    state = {}
    for name, tensor in notebook_state.items():
        if name.startswith("lstm."):  # weight_ih_l1_reverse -> backward_layers.1.weight_ih_l0
            kind, layer = name.removeprefix("lstm.").rsplit("_l", 1)
            direction = "backward" if layer.endswith("_reverse") else "forward"
            name = f"hybrid.title_encoder.lstm.{direction}_layers.{layer.removesuffix('_reverse')}.{kind}_l0"
        else:
            old, new = next((old, new) for old, new in renames if name.startswith(old))
            name = new + name.removeprefix(old)
        state[name] = tensor
    return state


def test_on_unpadded_papers_the_model_computes_the_notebooks_function():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import notebook_baseline

    # Widths 3 and 5 only: the notebook's k//2 padding (trimmed at the end) shifts even widths by one position.
    torch.manual_seed(0)
    notebook = notebook_baseline.HybridCNNLSTM(
        60, embed_dim=12, num_filters=6, kernel_sizes=[3, 5], lstm_hidden=5, num_classes=3, head_sizes=(16, 8)
    )
    for module in notebook.modules():  # BatchNorm statistics that are not the identity
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    config = HybridCNNLSTMConfig(
        vocab_size=60,
        embed_dim=12,
        num_filters=6,
        kernel_sizes=[3, 5],
        lstm_hidden=5,
        classifier_hidden_sizes=[16, 8],
        id2label={0: "a", 1: "b", 2: "c"},
        wide_branch=False,  # the notebook's model
    )
    model = HybridCNNLSTMForSequenceClassification(config)
    model.load_state_dict(notebook_weights_for_hf_hybrid(notebook.state_dict()))

    titles, abstracts = word_ids(4, 9, vocab_size=60), word_ids(4, 25, vocab_size=60, seed=1)
    expected, maps = notebook.eval()(titles, abstracts, torch.ones(4, 9))
    out = model.eval()(title_input_ids=titles, abstract_input_ids=abstracts, output_attentions=True)
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(out.fusion_weights, maps["fusion_weights"])


# --- the optional wide branch: a linear classifier over TF-IDF-weighted words and word pairs ---


def wide_model(make_tiny_config, seed=0, **overrides):
    model = build(make_tiny_config(wide_branch=True, wide_bigram_buckets=64, **overrides), seed=seed)
    with torch.no_grad():
        model.wide.weight.normal_()
        model.wide.idf.uniform_(1.0, 3.0)
    return model


def test_the_notebooks_model_has_no_wide_branch(tiny_model):
    assert tiny_model.config.wide_branch is False  # make_tiny_config's: the notebook's model
    assert tiny_model.wide is None and not any(name.startswith("wide.") for name in tiny_model.state_dict())


@pytest.mark.parametrize("sublinear_tf", [True, False])
def test_wide_logits_are_the_idf_weighted_normalised_sum_of_word_and_pair_weights(make_tiny_config, sublinear_tf):
    model = wide_model(make_tiny_config, wide_sublinear_tf=sublinear_tf)
    title, abstract = [5, 6, 5], [7, 8, 5]
    output = model(title_input_ids=torch.tensor([title]), abstract_input_ids=torch.tensor([abstract]))
    vocab_size, buckets = model.config.vocab_size, 64
    first, second = model.wide.PAIR_HASH
    features = title + abstract
    for words in (title, abstract):  # pairs never cross from the title into the abstract
        features += [vocab_size + (a * first + b * second) % buckets for a, b in zip(words, words[1:])]
    if sublinear_tf:  # each feature once, weighted by idf * (1 + ln count): word 5 is there 3 times
        counts = collections.Counter(features)
        features = list(counts)
        weights = torch.stack([model.wide.idf[f] * (1 + math.log(counts[f])) for f in features])
    else:  # the weighting of models saved before: each occurrence alike, normalised over the occurrences
        weights = torch.stack([model.wide.idf[f] for f in features])
    weights = weights / weights.norm()
    expected = sum(w * model.wide.weight[f] for w, f in zip(weights, features))
    torch.testing.assert_close(output.wide_logits[0], expected.log_softmax(-1))


def test_a_wide_model_predicts_with_both_branches_and_trains_each_on_its_own_loss(make_tiny_config):
    model = wide_model(make_tiny_config, class_weights=[2.0, 1.0, 0.5], label_smoothing=0.1)
    inputs = {
        "title_input_ids": torch.tensor([[5, 6, 5], [9, 4, 3]]),
        "abstract_input_ids": torch.tensor([[7, 8], [2, 2]]),
    }
    labels = torch.tensor([1, 2])
    output = model(**inputs, labels=labels)
    wide, model.wide = model.wide, None
    deep = model(**inputs, labels=labels)
    # the product of the two branches' probabilities, as log-probabilities up to a constant per paper
    torch.testing.assert_close(output.logits, deep.logits.log_softmax(-1) + output.wide_logits)
    weight = torch.tensor([2.0, 1.0, 0.5])
    wide_loss = torch.nn.functional.cross_entropy(output.wide_logits, labels, weight=weight, label_smoothing=0.1)
    torch.testing.assert_close(output.loss, deep.loss + wide_loss)
    model.wide = wide
    output.loss.backward()
    assert model.wide.weight.grad.abs().sum() > 0 and model.classifier[-1].weight.grad.abs().sum() > 0


def test_wide_logits_of_a_paper_do_not_depend_on_its_batch_or_on_empty_fields(make_tiny_config):
    model = wide_model(make_tiny_config)
    titles, title_mask = right_pad([[5, 6, 7], [9, 10, 11, 12, 13, 14]])
    abstracts, abstract_mask = right_pad([[2, 3], [4, 5, 6, 7, 8, 9, 10]])
    batched = model(
        title_input_ids=titles,
        abstract_input_ids=abstracts,
        title_attention_mask=title_mask,
        abstract_attention_mask=abstract_mask,
    )
    alone = model(title_input_ids=torch.tensor([[5, 6, 7]]), abstract_input_ids=torch.tensor([[2, 3]]))
    torch.testing.assert_close(batched.wide_logits[:1], alone.wide_logits)
    no_abstract = model(
        title_input_ids=torch.tensor([[5, 6, 7]]), abstract_input_ids=torch.zeros(1, 0, dtype=torch.long)
    )
    assert torch.isfinite(no_abstract.logits).all() and torch.isfinite(no_abstract.wide_logits).all()


def test_document_frequencies_give_scikit_learns_smoothed_idf(make_tiny_config, tiny_tokenizer, tiny_corpus):
    from datasets import Dataset
    from sklearn.feature_extraction.text import TfidfVectorizer

    titles, abstracts = tiny_corpus[:6], tiny_corpus[6:]
    model = build(make_tiny_config(wide_branch=True, wide_bigram_buckets=1 << 20))
    model.wide.count_document_frequencies(tiny_tokenizer, Dataset.from_dict({"title": titles, "abstract": abstracts}))
    vocab = tiny_tokenizer.get_vocab()
    documents = [
        tiny_tokenizer.split_words(t, "title") + tiny_tokenizer.split_words(a, "abstract")
        for t, a in zip(titles, abstracts)
    ]
    reference = TfidfVectorizer(analyzer=lambda words: words, smooth_idf=True).fit(documents)
    for word, column in reference.vocabulary_.items():
        assert model.wide.idf[vocab[word]].item() == pytest.approx(reference.idf_[column], rel=1e-6), word
    # <UNK> and the features no paper has weigh nothing, as TF-IDF leaves out what is not in its vocabulary.
    assert model.wide.idf[vocab["<UNK>"]].item() == model.wide.idf[vocab["<PAD>"]].item() == 0.0
    # "neural networks" is in the title and the abstract of one paper (and nowhere else): it counts once.
    first, second = model.wide.PAIR_HASH
    bucket = model.config.vocab_size + (vocab["neural"] * first + vocab["networks"] * second) % (1 << 20)
    assert model.wide.idf[bucket].item() == pytest.approx(math.log(7 / 2) + 1)


def test_wide_branch_survives_save_and_reload(make_tiny_config, tmp_path):
    model = wide_model(make_tiny_config)
    model.save_pretrained(tmp_path)
    reloaded = HybridCNNLSTMForSequenceClassification.from_pretrained(tmp_path).eval()
    assert torch.equal(reloaded.wide.idf, model.wide.idf) and torch.equal(reloaded.wide.weight, model.wide.weight)
    inputs = dict(title_input_ids=word_ids(2, 4), abstract_input_ids=word_ids(2, 9, seed=1))
    torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, atol=1e-6, rtol=1e-6)


def test_label_smoothing_smooths_the_loss(make_tiny_config):
    smooth = build(make_tiny_config(label_smoothing=0.2))
    inputs = dict(
        title_input_ids=word_ids(4, 3), abstract_input_ids=word_ids(4, 6, seed=1), labels=torch.tensor([0, 1, 2, 0])
    )
    output = smooth(**inputs)
    expected = F.cross_entropy(output.logits, inputs["labels"], label_smoothing=0.2)
    assert output.loss.item() == pytest.approx(expected.item())
