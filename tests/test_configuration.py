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


def test_every_hyperparameter_of_the_config_is_a_training_flag_with_its_default_help_and_range():
    """The config is the one place a hyperparameter is declared: the command line follows it."""
    import dataclasses

    from transformers import HfArgumentParser

    from hf_hybrid.training_args import DEFAULT_RECIPE_MODEL, MODEL_HYPERPARAMETERS, NOT_FLAGS, ModelArguments

    flags = {f.name: f for f in dataclasses.fields(ModelArguments)}
    config = HybridCNNLSTMConfig()
    for name in set(MODEL_HYPERPARAMETERS) - set(NOT_FLAGS):
        default = flags[name].default_factory() if flags[name].default is dataclasses.MISSING else flags[name].default
        assert default == DEFAULT_RECIPE_MODEL.get(name, getattr(config, name)), name
        assert flags[name].metadata["help"], name
        assert name in ModelArguments.RANGES or isinstance(default, bool), f"{name} has no range check"
    # Every one of them is a key of the dict that config.json is written from: what a flag sets is saved.
    assert set(MODEL_HYPERPARAMETERS) <= set(config.to_dict())
    # What the flags give is what the config is built from, every field but the learned vocabulary's size.
    (arguments,) = HfArgumentParser(ModelArguments).parse_args_into_dataclasses(
        ["--lstm_layers", "3", "--kernel_sizes", "2", "7"]
    )
    assert arguments.config_values() == {
        **{name: getattr(config, name) for name in arguments.config_values()},
        **DEFAULT_RECIPE_MODEL,
        "lstm_layers": 3,
        "kernel_sizes": [2, 7],
    }
