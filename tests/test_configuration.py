"""HybridCNNLSTMConfig: the notebook's defaults, labels, validation, JSON round trip, Auto classes."""

import json

import pytest

from hf_hybrid import HybridCNNLSTMConfig


def test_defaults_are_the_notebooks_hyperparameters():
    config = HybridCNNLSTMConfig()
    assert config.model_type == "hybrid_cnn_lstm"
    assert config.vocab_size == 50000  # Vocabulary(max_vocab_size=50000)
    assert config.embed_dim == 300
    assert config.num_filters == 256
    assert config.kernel_sizes == [3, 4, 5]
    assert config.lstm_hidden == 256
    assert config.lstm_layers == 2
    assert config.dropout == 0.5
    assert config.embedding_dropout == 0.25  # the notebook's dropout * 0.5
    assert config.output_dropout == 0.4  # the notebook's dropout * 0.8
    assert config.classifier_hidden_sizes == [512, 256]
    assert config.max_title_length == 30
    assert config.max_abstract_length == 200
    assert config.pad_token_id == 0
    assert config.class_weights is None


def test_sizes_given_as_tuples_are_stored_as_lists():
    config = HybridCNNLSTMConfig(kernel_sizes=(2, 3), classifier_hidden_sizes=(8,))
    assert config.kernel_sizes == [2, 3]
    assert config.classifier_hidden_sizes == [8]


def test_num_labels_comes_from_id2label_and_label2id_is_derived():
    config = HybridCNNLSTMConfig(id2label={0: "cs.AI", 1: "cs.CL", 2: "cs.CV", 3: "cs.LG"})
    assert config.num_labels == 4
    assert config.label2id == {"cs.AI": 0, "cs.CL": 1, "cs.CV": 2, "cs.LG": 3}


def test_save_and_reload_gives_an_equal_config(tmp_path):
    config = HybridCNNLSTMConfig(
        vocab_size=123,
        embed_dim=12,
        num_filters=6,
        kernel_sizes=[2, 5],
        lstm_hidden=7,
        lstm_layers=3,
        dropout=0.3,
        classifier_hidden_sizes=[9],
        max_title_length=11,
        max_abstract_length=42,
        id2label={0: "cs.AI", 1: "cs.CL", 2: "cs.CV"},
        class_weights=[2.0, 1.0, 0.5],
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "hybrid_cnn_lstm"
    assert saved["kernel_sizes"] == [2, 5]
    assert saved["class_weights"] == [2.0, 1.0, 0.5]

    reloaded = HybridCNNLSTMConfig.from_pretrained(tmp_path)
    assert reloaded.to_dict() == config.to_dict()
    assert reloaded.id2label == {0: "cs.AI", 1: "cs.CL", 2: "cs.CV"}  # integer keys again


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kernel_sizes", []),
        ("kernel_sizes", [3, 0]),
        ("embed_dim", 0),
        ("lstm_layers", 0),
        ("num_filters", -1),
        ("lstm_hidden", 0),
        ("max_title_length", 0),
        ("max_abstract_length", -5),
        ("classifier_hidden_sizes", [16, 0]),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("embedding_dropout", 1.5),
        ("output_dropout", -0.5),
    ],
)
def test_invalid_value_raises_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        HybridCNNLSTMConfig(**{field: value})


def test_class_weights_of_wrong_length_raise_value_error():
    with pytest.raises(ValueError, match="class_weights"):
        HybridCNNLSTMConfig(id2label={0: "a", 1: "b", 2: "c"}, class_weights=[1.0, 2.0])


def test_auto_map_names_config_encoder_and_classifier():
    auto_map = HybridCNNLSTMConfig().auto_map
    assert auto_map["AutoConfig"] == "configuration_hybrid_cnn_lstm.HybridCNNLSTMConfig"
    assert auto_map["AutoModel"] == "modeling_hybrid_cnn_lstm.HybridCNNLSTMModel"
    assert (
        auto_map["AutoModelForSequenceClassification"]
        == "modeling_hybrid_cnn_lstm.HybridCNNLSTMForSequenceClassification"
    )


def test_every_hyperparameter_of_the_config_is_one_training_flag_or_deliberately_none():
    """Each hyperparameter the config declares is a field of `ModelArguments` with the config's default (or the
    recipe's, where a recipe sets it), a help and a range, or one of `NOT_FLAGS`: they cannot drift apart."""
    import dataclasses

    from transformers import HfArgumentParser

    from hf_hybrid.recipes import DEFAULT_RECIPE, RECIPES
    from hf_hybrid.training_args import MODEL_HYPERPARAMETERS, NOT_FLAGS, ModelArguments

    flags = {f.name: f for f in dataclasses.fields(ModelArguments)}
    assert set(NOT_FLAGS) <= set(MODEL_HYPERPARAMETERS)
    # `--class_weights` is a rule by label name (`hf_hybrid.class_weights`), not the config's list by label id.
    assert set(NOT_FLAGS) & set(flags) == {"class_weights"}
    config = HybridCNNLSTMConfig()
    resolved = ModelArguments().for_recipe(DEFAULT_RECIPE)
    for name in set(MODEL_HYPERPARAMETERS) - set(NOT_FLAGS):
        assert name in flags, f"{name} has no flag"
        assert getattr(resolved, name) == getattr(config, name), name  # the default recipe builds the default config
        if name in RECIPES[DEFAULT_RECIPE]:
            assert flags[name].default is None, name  # the recipe's
        assert flags[name].metadata["help"], name
        assert name in ModelArguments.RANGES or isinstance(getattr(config, name), bool), f"{name} has no range check"
    # The help of a hyperparameter lives in one place: its flag (the config documents only what is not a flag).
    for name in set(MODEL_HYPERPARAMETERS) - set(NOT_FLAGS):
        assert f"        {name}:" not in HybridCNNLSTMConfig.__doc__, name
    for name in NOT_FLAGS:
        assert f"        {name}:" in HybridCNNLSTMConfig.__doc__, name
    # Every one of them is a key of the dict that config.json is written from: what a flag sets is saved.
    assert set(MODEL_HYPERPARAMETERS) <= set(config.to_dict())
    # What the flags give is what the config is built from, every field but the learned vocabulary's size.
    (arguments,) = HfArgumentParser(ModelArguments).parse_args_into_dataclasses(
        ["--lstm_layers", "3", "--kernel_sizes", "2", "7"]
    )
    assert arguments.for_recipe(DEFAULT_RECIPE).config_values() == {
        **{name: getattr(config, name) for name in resolved.config_values()},
        "lstm_layers": 3,
        "kernel_sizes": [2, 7],
    }


def test_a_config_json_without_wide_branch_loads_as_a_model_without_one(tmp_path):
    """Python builds the wide branch by default; a config.json that does not name it is of a model without one."""
    assert HybridCNNLSTMConfig().wide_branch is True
    HybridCNNLSTMConfig(id2label={0: "a", 1: "b"}, wide_branch=False).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["wide_branch"] is False  # written explicitly, even at a default
    del saved["wide_branch"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert HybridCNNLSTMConfig.from_pretrained(tmp_path).wide_branch is False


def test_the_smallest_vocabulary_is_pad_unk_and_one_word():
    from hf_hybrid.model.configuration_hybrid_cnn_lstm import MIN_VOCAB_SIZE

    assert MIN_VOCAB_SIZE == 3
    HybridCNNLSTMConfig(vocab_size=3)
    with pytest.raises(ValueError, match="vocab_size` must be at least 3"):
        HybridCNNLSTMConfig(vocab_size=2)


def test_numpy_and_torch_scalars_become_python_numbers_that_json_writes(tmp_path):
    import numpy as np
    import torch

    from hf_hybrid.training_args import HybridTrainingArguments, ModelArguments

    config = HybridCNNLSTMConfig(
        id2label={0: "a", 1: "b"},
        embed_dim=np.int64(16),
        kernel_sizes=[np.int64(3), torch.tensor(4)],
        dropout=np.float32(0.25),
        calibration_temperature=torch.tensor(1.5),
        problem_type="multi_label_classification",
        label_thresholds=[np.float32(0.25), np.float32(0.75)],
        wide_branch=np.bool_(True),
    )
    config.save_pretrained(tmp_path)  # before: "Object of type float32 is not JSON serializable"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["embed_dim"], saved["kernel_sizes"], saved["dropout"]) == (16, [3, 4], 0.25)
    assert (saved["calibration_temperature"], saved["label_thresholds"], saved["wide_branch"]) == (
        1.5,
        [0.25, 0.75],
        True,
    )
    model_args = ModelArguments(embed_dim=np.int64(16), dropout=np.float32(0.25))
    training_args = HybridTrainingArguments(
        output_dir=str(tmp_path / "out"), learning_rate=np.float32(0.5), num_train_epochs=np.int64(2)
    )
    assert (type(model_args.embed_dim), type(model_args.dropout)) == (int, float)
    assert json.loads(training_args.to_json_string())["num_train_epochs"] == 2
