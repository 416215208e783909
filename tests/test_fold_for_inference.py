"""`fold_for_inference()`: the abstract convolutions as word tables give the unfolded model's outputs."""

import pytest
import torch
from conftest import with_trained_batch_norms
from transformers import pipeline

from hf_hybrid import HybridCNNLSTMForSequenceClassification, HybridCNNLSTMModel

PAD = 0


def trained_like(config, seed=0):
    """A random model whose BatchNorms and convolution biases are non-trivial, as after training."""
    torch.manual_seed(seed)
    model = with_trained_batch_norms(HybridCNNLSTMForSequenceClassification(config))
    with torch.no_grad():
        for conv in model.hybrid.abstract_encoder.convs:
            conv.bias.normal_(0.0, 0.3)
    return model.eval()


def padded_batch(lengths, vocab_size, seed):
    """Right-padded random word ids (never the padding id) with one row per length; returns (ids, mask)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab_size, (len(lengths), max(lengths, default=0)), generator=generator)
    mask = torch.arange(ids.shape[1]) < torch.tensor(lengths).unsqueeze(1)
    return ids.masked_fill(~mask, PAD), mask.long()


def outputs(model, title, abstract):
    (title_ids, title_mask), (abstract_ids, abstract_mask) = title, abstract
    with torch.inference_mode():
        out = model(
            title_input_ids=title_ids,
            title_attention_mask=title_mask,
            abstract_input_ids=abstract_ids,
            abstract_attention_mask=abstract_mask,
            output_attentions=True,
        )
    return [out.logits, out.title_attention, out.abstract_attention, out.fusion_weights]


def assert_same_outputs(model, title, abstract, dtype=torch.float32, atol=1e-5):
    model.train().eval()  # unfolded
    expected = outputs(model, title, abstract)
    got = outputs(model.fold_for_inference(dtype), title, abstract)
    assert model.folded_for_inference == dtype
    for name, want, have in zip(["logits", "title attention", "abstract attention", "fusion weights"], expected, got):
        torch.testing.assert_close(have, want, atol=atol, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("kernel_sizes", [[3, 4, 5], [2, 3, 4, 5], [1, 6], [4], [7]])
def test_folded_model_gives_the_same_outputs_for_every_kernel_width_and_padding(make_tiny_config, kernel_sizes):
    config = make_tiny_config(kernel_sizes=kernel_sizes)
    model = trained_like(config)
    # Lengths shorter than, equal to and longer than the widths; padding after every short row.
    abstract_lengths = [1, 2, 3, 5, 9, 16]
    title = padded_batch([3, 1, 8, 2, 5, 4], config.vocab_size, seed=1)
    abstract = padded_batch(abstract_lengths, config.vocab_size, seed=2)
    assert_same_outputs(model, title, abstract)


@pytest.mark.parametrize(("title_lengths", "abstract_lengths"), [([0, 3], [4, 0]), ([0, 0], [5, 2]), ([3, 2], [0, 0])])
def test_folded_model_gives_the_same_outputs_for_empty_fields(make_tiny_config, title_lengths, abstract_lengths):
    config = make_tiny_config()
    model = trained_like(config)
    title = padded_batch(title_lengths, config.vocab_size, seed=3)
    abstract = padded_batch(abstract_lengths, config.vocab_size, seed=4)
    assert_same_outputs(model, title, abstract)


@pytest.mark.parametrize("lstm_layers", [1, 2, 3])
def test_folded_title_lstms_give_the_unfolded_states_for_titles_of_every_length(make_tiny_config, lstm_layers):
    config = make_tiny_config(lstm_layers=lstm_layers, lstm_hidden=12)
    model = trained_like(config)
    # Unsorted lengths, ties, one title of the batch's full length, empty titles (one masked position).
    title = padded_batch([5, 1, 9, 0, 5, 3, 9, 2, 0, 7], config.vocab_size, seed=20)
    abstract = padded_batch([6] * 10, config.vocab_size, seed=21)
    assert_same_outputs(model, title, abstract)
    ids, mask = title
    encoder = model.hybrid
    with torch.inference_mode():
        expected = encoder.title_encoder.lstm(encoder._embed(ids, mask.bool()), mask.bool())
        states = encoder._folded_encoders.title_lstm(ids, mask.bool())
    # The states of every title's words, and of an empty title's one masked position; zeros on other padding.
    read = (torch.arange(ids.shape[1]) < mask.sum(dim=1, keepdim=True).clamp(min=1)).unsqueeze(-1)
    torch.testing.assert_close(states * read, expected * read, atol=1e-6, rtol=0)
    assert not (states * ~read).any()


@pytest.mark.parametrize("title_lengths", [[1], [6], [8], [4, 4]])
def test_a_paper_alone_and_titles_of_one_length_give_the_unfolded_outputs(make_tiny_config, title_lengths):
    """Titles without padding (one paper alone, the pipeline's case) go through the folded title LSTMs too."""
    config = make_tiny_config(lstm_hidden=12)
    model = trained_like(config, seed=3)
    with torch.no_grad():
        for parameter in model.hybrid.title_encoder.lstm.parameters():
            parameter.mul_(4)  # saturating gates, where a wrong gate order or a missed step would show
    title = padded_batch(title_lengths, config.vocab_size, seed=30)
    abstract = padded_batch([5] * len(title_lengths), config.vocab_size, seed=31)
    assert_same_outputs(model, title, abstract)


def test_folded_model_gives_each_paper_the_same_logits_alone_and_in_a_batch(make_tiny_config):
    config = make_tiny_config(kernel_sizes=[2, 3, 5])
    model = trained_like(config).fold_for_inference()
    title = padded_batch([4, 2, 7], config.vocab_size, seed=5)
    abstract = padded_batch([3, 16, 9], config.vocab_size, seed=6)
    batched = outputs(model, title, abstract)[0]
    for row, (title_length, abstract_length) in enumerate([(4, 3), (2, 16), (7, 9)]):
        alone = outputs(
            model,
            (title[0][row : row + 1, :title_length], title[1][row : row + 1, :title_length]),
            (abstract[0][row : row + 1, :abstract_length], abstract[1][row : row + 1, :abstract_length]),
        )[0]
        torch.testing.assert_close(alone, batched[row : row + 1], atol=1e-5, rtol=0)


def test_ids_under_a_zero_mask_do_not_matter_to_the_folded_model(make_tiny_config):
    config = make_tiny_config()
    model = trained_like(config).fold_for_inference()
    title = padded_batch([3, 3], config.vocab_size, seed=7)
    ids, mask = padded_batch([9, 4], config.vocab_size, seed=8)
    garbage = ids.masked_fill(~mask.bool(), 5)
    torch.testing.assert_close(outputs(model, title, (garbage, mask)), outputs(model, title, (ids, mask)))


def test_bfloat16_tables_halve_the_memory_and_stay_close(make_tiny_config):
    config = make_tiny_config()
    model = trained_like(config)
    title = padded_batch([3, 6], config.vocab_size, seed=9)
    abstract = padded_batch([16, 7], config.vocab_size, seed=10)
    assert_same_outputs(model, title, abstract, dtype=torch.bfloat16, atol=0.05)
    bf16_bytes = model.hybrid._folded_encoders.num_bytes
    model.fold_for_inference(torch.float32)
    assert model.hybrid._folded_encoders.num_bytes == 2 * bf16_bytes
    # The convolution tables, and the input gates of the first title LSTM layer (2 directions x 4 gates).
    values_per_word = sum(config.kernel_sizes) * config.num_filters + 2 * 4 * config.lstm_hidden
    assert bf16_bytes == 2 * (config.vocab_size + 1) * values_per_word


def test_the_encoder_alone_folds_too(make_tiny_config):
    config = make_tiny_config()
    encoder = trained_like(config).hybrid
    assert isinstance(encoder, HybridCNNLSTMModel)
    inputs = dict(
        title_input_ids=padded_batch([3, 1], config.vocab_size, 11)[0],
        abstract_input_ids=padded_batch([8, 2], config.vocab_size, 12)[0],
    )
    with torch.no_grad():
        plain = encoder(**inputs).fused_representation
        fast = encoder.fold_for_inference()(**inputs).fused_representation
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


# --- it is safe: training mode, changed weights, autograd, saving ---


def test_folding_refuses_training_mode(tiny_model):
    tiny_model.train()
    with pytest.raises(RuntimeError, match=r"call model.eval\(\) first"):
        tiny_model.fold_for_inference()
    assert tiny_model.folded_for_inference is None


def test_unknown_dtype_is_refused(tiny_model):
    with pytest.raises(ValueError, match="float32 or torch.bfloat16"):
        tiny_model.fold_for_inference(torch.float16)


def test_training_mode_discards_the_tables(make_tiny_config):
    model = trained_like(make_tiny_config()).fold_for_inference()
    model.train()
    assert model.folded_for_inference is None
    model.eval()
    assert model.folded_for_inference is None  # eval() alone does not bring stale tables back


def test_changed_weights_make_the_folded_model_raise_until_folded_again(make_tiny_config):
    config = make_tiny_config()
    model = trained_like(config, seed=0).fold_for_inference()
    title, abstract = padded_batch([3, 2], config.vocab_size, 13), padded_batch([6, 9], config.vocab_size, 14)
    other = trained_like(config, seed=1)
    model.load_state_dict(other.state_dict())
    with pytest.raises(RuntimeError, match=r"changed after fold_for_inference\(\)"):
        outputs(model, title, abstract)
    model.fold_for_inference()
    torch.testing.assert_close(
        outputs(model, title, abstract)[0], outputs(other, title, abstract)[0], atol=1e-5, rtol=0
    )


def test_changed_title_lstm_weights_make_the_folded_model_raise(make_tiny_config):
    config = make_tiny_config()
    model = trained_like(config).fold_for_inference()
    with torch.no_grad():
        model.hybrid.title_encoder.lstm.backward_layers[-1].weight_hh_l0.mul_(2.0)
    with pytest.raises(RuntimeError, match="title LSTM weights changed"):
        outputs(model, padded_batch([2, 3], config.vocab_size, 22), padded_batch([4, 4], config.vocab_size, 23))


def test_a_replaced_embedding_makes_the_folded_model_raise(make_tiny_config):
    config = make_tiny_config()
    model = trained_like(config).fold_for_inference()
    model.hybrid.set_input_embeddings(torch.nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD))
    with pytest.raises(RuntimeError, match="call model.fold_for_inference"):
        outputs(model, padded_batch([2], config.vocab_size, 15), padded_batch([4], config.vocab_size, 16))


def test_with_autograd_on_the_folded_model_runs_unfolded_so_gradients_reach_the_convolutions(make_tiny_config):
    config = make_tiny_config()
    model = trained_like(config).fold_for_inference()
    title, abstract = padded_batch([3], config.vocab_size, 17), padded_batch([9], config.vocab_size, 18)
    model(title_input_ids=title[0], abstract_input_ids=abstract[0]).logits.sum().backward()
    for conv in model.hybrid.abstract_encoder.convs:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("field", ["title", "abstract"])
@pytest.mark.parametrize("bad_id", ["vocab_size", -1])
def test_an_out_of_vocabulary_id_is_an_error(make_tiny_config, field, bad_id):
    # A table holds a block of rows per offset or direction: such an id must not read a neighbouring block.
    config = make_tiny_config()
    model = trained_like(config).fold_for_inference()
    bad = config.vocab_size if bad_id == "vocab_size" else bad_id
    fields = {
        "title": padded_batch([2, 1], config.vocab_size, 19),
        "abstract": padded_batch([3, 2], config.vocab_size, 24),
    }
    ids, mask = fields[field]
    ids = ids.clone()
    ids[0, 1] = bad
    fields[field] = (ids, mask)
    with pytest.raises(IndexError, match=f"{field}_input_ids holds an id < 0 or >= vocab_size"):
        outputs(model, fields["title"], fields["abstract"])


def test_tables_are_never_saved(make_tiny_config, tmp_path):
    model = trained_like(make_tiny_config())
    keys = set(model.state_dict())
    model.fold_for_inference()
    assert set(model.state_dict()) == keys
    model.save_pretrained(tmp_path)
    reloaded = HybridCNNLSTMForSequenceClassification.from_pretrained(tmp_path)
    assert reloaded.folded_for_inference is None


# --- the pipeline keyword and remote code ---


def test_pipeline_keyword_folds_the_model_and_gives_the_same_results(saved_model_dir):
    paper = {"title": "Attention is all you need", "abstract": "We propose a new network based on attention."}
    plain = pipeline(model=str(saved_model_dir), trust_remote_code=True)
    fast = pipeline(model=str(saved_model_dir), trust_remote_code=True, fold_for_inference=True)
    assert fast.model.folded_for_inference == torch.float32 and plain.model.folded_for_inference is None
    expected, result = plain(paper), fast(paper)
    assert result["label"] == expected["label"]
    assert result["scores"] == pytest.approx(expected["scores"], abs=1e-5)
    assert result["fusion_weights"] == pytest.approx(expected["fusion_weights"], abs=1e-5)
    assert [w["word"] for w in result["abstract_words"]] == [w["word"] for w in expected["abstract_words"]]
    bf16 = pipeline(model=str(saved_model_dir), trust_remote_code=True, fold_for_inference="bfloat16")
    assert bf16.model.folded_for_inference == torch.bfloat16
    assert bf16(paper)["scores"] == pytest.approx(expected["scores"], abs=0.02)
