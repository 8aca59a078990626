"""funnel_tf.registry: the one registration mechanism, and every named lookup going through it."""

import subprocess
import sys

import pytest

from funnel_tf.errors import UserError
from funnel_tf.registry import (MODEL_CLASSES, Registry, UnknownModelClassError, UnknownNameError,
                                resolve_class_name)


def test_register_get_aliases_and_order():
    reg = Registry("color", normalize=str.lower)
    assert reg.register("red", "rouge", value=1) == 1

    @reg.register("blue")
    class Blue:
        pass

    assert reg.get("ROUGE") == 1 and reg["Red"] == 1 and reg.get("blue") is Blue
    assert reg.canonical("Rouge") == "red" and reg.names() == ("red", "blue")
    assert reg.aliases() == {"rouge": "red"} and reg.aliases_of("red") == ("rouge",)
    assert "RED" in reg and "green" not in reg and 3 not in reg
    assert list(reg) == ["red", "blue"] and len(reg) == 2 and dict(reg.items())["red"] == 1


def test_unknown_name_is_one_user_error_line_listing_the_known_names():
    reg = Registry("color")
    reg.register("red", "rouge", value=1)
    reg.register("blue", value=2)
    with pytest.raises(UnknownNameError) as info:
        reg.get("green")
    assert str(info.value) == "unknown color 'green'; known: ['blue', 'red']"  # not KeyError's repr
    assert isinstance(info.value, (UserError, KeyError, ValueError))
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


def test_custom_error_and_message():
    class MyError(UserError):
        pass

    reg = Registry("thing", error=MyError, message=lambda name, r: f"no {name}; try {list(r.names())}")
    reg.register("a", value=0)
    with pytest.raises(MyError, match=r"^no b; try \['a'\]$"):
        reg.get("b")


def test_a_name_registered_twice_is_refused():
    reg = Registry("color")
    reg.register("red", "rouge", value=1)
    with pytest.raises(ValueError, match="'rouge' is registered twice"):
        reg.register("rouge", value=2)
    with pytest.raises(ValueError, match="'red' is registered twice"):
        reg.register("blue", "red", value=2)


def test_model_classes_names_and_aliases_unchanged():
    assert MODEL_CLASSES.names() == (
        "FunnelBaseModel", "FunnelModel", "FunnelForMaskedLM", "FunnelForPreTraining",
        "FunnelForSequenceClassification", "FunnelForMultipleChoice", "FunnelForTokenClassification",
        "FunnelForQuestionAnswering")
    assert MODEL_CLASSES.aliases() == {
        "base": "FunnelBaseModel", "full": "FunnelModel", "mlm": "FunnelForMaskedLM",
        "electra": "FunnelForPreTraining", "pretraining": "FunnelForPreTraining",
        "seq_cls": "FunnelForSequenceClassification", "classification": "FunnelForSequenceClassification",
        "regression": "FunnelForSequenceClassification", "multiple_choice": "FunnelForMultipleChoice",
        "token_cls": "FunnelForTokenClassification", "qa": "FunnelForQuestionAnswering"}
    assert resolve_class_name("mlm") == "FunnelForMaskedLM" == resolve_class_name("FunnelForMaskedLM")
    with pytest.raises(UnknownModelClassError, match=r"unknown model class 'MLM'; use one of \['base'"):
        resolve_class_name("MLM")  # model class names are case-sensitive, as before
    assert issubclass(UnknownModelClassError, ValueError)


def test_model_class_registry_imports_neither_tensorflow_nor_checkpoints():
    code = ("import sys, funnel_tf.registry as r; r.resolve_class_name('qa'); "
            "print(sorted(m for m in sys.modules if m in ('tensorflow', 'funnel_tf.checkpoints.registry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dataset_and_metric_lookups_are_registries_with_user_errors():
    from funnel_tf.metrics import glue as glue_metrics
    from funnel_tf.text import benchmarks as text_benchmarks
    from funnel_tf.text import glue as text_glue

    assert isinstance(text_glue.GLUE_TASKS, Registry) and isinstance(text_benchmarks.TEXT_CLS_TASKS, Registry)
    assert isinstance(text_glue.get_glue_task("MNLI_mismatched"), text_glue.GlueDataset)
    assert text_glue.GLUE_TASKS.aliases_of("sts-b") == ("stsb", "sts")
    assert text_benchmarks.get_text_cls_task("Amazon_Polarity").name == "amazon2"
    assert glue_metrics.canonical_task("MNLI_matched") == "mnli-m"
    for lookup, name in ((text_glue.get_glue_task, "sst-3"), (text_benchmarks.get_text_cls_task, "sst-3"),
                         (glue_metrics.canonical_task, "sst-3")):
        with pytest.raises(UserError, match=r"^unknown .*'sst-3'; (known|expected one of)"):
            lookup(name)


def test_task_registry_takes_its_aliases_from_the_dataset_registries():
    from funnel_tf.tasks import get_task

    assert get_task(" Amazon_Polarity ").name == "amazon2" and get_task("mnli_mismatched").name == "mnli"
    assert get_task("diagnostic").name == "ax" and get_task("SQUAD_V2").v2
