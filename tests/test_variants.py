import pytest

from convbench.variants import VARIANTS, build_variant

# Keras `count_params()` of each variant, as EXPERIMENTS.md gives them.
EXPECTED = {
    ("mlp", (28, 28, 1), 10): 669_706,
    ("cnn", (28, 28, 1), 10): 1_199_882,
    ("lenet5", (28, 28, 1), 10): 61_706,
}


@pytest.mark.parametrize(("variant", "shape", "classes"), list(EXPECTED))
def test_parameter_count(variant: str, shape: tuple, classes: int) -> None:
    model = build_variant(variant, shape, classes)
    assert model.count_params() == EXPECTED[(variant, shape, classes)]


def test_lenet5_sees_32x32_inputs() -> None:
    model = build_variant("lenet5", (28, 28, 1), 10)
    assert model.layers[0].output.shape[1:3] == (32, 32)


def test_random_forest_is_a_sklearn_classifier() -> None:
    assert VARIANTS["random_forest"].kind == "sklearn"
    assert hasattr(build_variant("random_forest", (28, 28, 1), 10), "predict_proba")


def test_unknown_variant() -> None:
    with pytest.raises(KeyError, match="allowed"):
        build_variant("vgg99", (28, 28, 1), 10)
