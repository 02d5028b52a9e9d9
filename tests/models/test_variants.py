import pytest

from convbench.models.variants import VARIANTS, build_variant

# Keras `count_params()` of each variant, as EXPERIMENTS.md gives them.
EXPECTED = {
    ("mlp", (28, 28, 1), 10): 669_706,
    ("cnn", (28, 28, 1), 10): 1_199_882,
    ("lenet5", (28, 28, 1), 10): 61_706,
    ("small_cnn", (150, 150, 3), 2): 1_212_513,
    ("vgg16_features", (4, 4, 512), 2): 524_417,  # the head on VGG16 features
    ("vgg16_finetune", (150, 150, 3), 2): 15_239_105,
    ("cifar_cnn", (32, 32, 3), 10): 4_200_842,
    ("deep_cnn", (32, 32, 3), 10): 1_250_858,
}

# Batch-normalised variants: each conv/hidden dense loses its bias (BN shifts instead)
# and gains BN's 4 values per channel (scale, shift, moving mean and variance).
BATCH_NORM = {
    ("cnn_bn", (28, 28, 1), 10): ("cnn", 32 + 64 + 128),
    ("small_cnn_bn", (150, 150, 3), 2): ("small_cnn", 32 + 32 + 64 + 64),
    ("deep_cnn_bn", (32, 32, 3), 10): ("deep_cnn", 32 + 32 + 64 + 64 + 512),
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


@pytest.mark.parametrize(("variant", "shape", "classes"), list(BATCH_NORM))
def test_batch_norm_variants(variant: str, shape: tuple, classes: int) -> None:
    plain, channels = BATCH_NORM[(variant, shape, classes)]
    model = build_variant(variant, shape, classes)
    expected = build_variant(plain, shape, classes).count_params() - channels + 4 * channels
    assert model.count_params() == expected
    assert sum(type(layer).__name__ == "BatchNormalization" for layer in model.layers) >= 3


def test_two_classes_get_one_sigmoid_unit() -> None:
    model = build_variant("small_cnn", (150, 150, 3), 2)
    assert model.outputs[0].shape[-1] == 1
    assert model.layers[-1].activation.__name__ == "sigmoid"
