import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nsclc_engine.preprocess.dataset import (
    AugmentConfig,
    NumberedDraws,
    augment_volume,
    balanced_sampler,
    class_weights,
    expected_balance,
    make_datasets,
    rotate_in_plane,
    sample_weights,
)


@pytest.fixture()
def cohort_arrays(tmp_path):
    """Eight patients with distinct random volumes on disk; class 0 is the minority."""
    rng = np.random.default_rng(0)
    ids = [f"P{i}" for i in range(8)]
    labels = {pid: (0 if i < 3 else 1) for i, pid in enumerate(ids)}
    paths = {}
    for pid in ids:
        paths[pid] = tmp_path / f"{pid}.image.npy"
        np.save(paths[pid], rng.random((6, 16, 16), dtype=np.float32))
    split = {"train": ids[:2] + ids[3:6], "validation": [ids[2], ids[6]], "test": [ids[7]]}
    return split, labels, paths


def test_class_weights_and_sample_weights_by_hand():
    labels = [0, 1, 1, 1]
    torch.testing.assert_close(class_weights(labels), torch.tensor([2.0, 4 / 6]))
    np.testing.assert_allclose(sample_weights(labels), [1.0, 1 / 3, 1 / 3, 1 / 3])
    assert expected_balance(labels, use_sampler=False) == {0: 0.25, 1: 0.75}
    assert expected_balance(labels, use_sampler=True) == {0: 0.5, 1: 0.5}
    with pytest.raises(ValueError, match="needs both classes"):
        class_weights([1, 1, 1])


def test_sampler_balances_classes_and_is_seeded():
    labels = [0] * 10 + [1] * 90
    drawn = [labels[i] for _ in range(20) for i, _ in balanced_sampler(labels, seed=1)]
    assert np.mean(np.array(drawn) == 0) == pytest.approx(0.5, abs=0.04)
    assert list(balanced_sampler(labels, 5)) == list(balanced_sampler(labels, 5))


def test_balancing_depends_on_the_training_split_only(cohort_arrays):
    split, labels, paths = cohort_arrays
    changed = dict(labels, **{p: 1 - labels[p] for p in split["validation"] + split["test"]})
    seen = []
    for these in (labels, changed):
        train = make_datasets(split, these, paths, AugmentConfig("minority"), seed=0)["train"]
        train_labels = [item.label for item in train.items]
        seen.append(
            (
                class_weights(train_labels),
                list(balanced_sampler(train_labels, seed=2)),
                train.augment_labels,
            )
        )
    torch.testing.assert_close(seen[0][0], seen[1][0])
    assert seen[0][1] == seen[1][1]
    assert seen[0][2] == seen[1][2] == frozenset({0})


def test_repeated_draws_of_one_item_get_their_own_augmentation(cohort_arrays):
    assert list(NumberedDraws([3, 1, 3, 3])) == [(3, 0), (1, 0), (3, 1), (3, 2)]
    split, labels, paths = cohort_arrays
    train = make_datasets(split, labels, paths, AugmentConfig("minority"), seed=0)["train"]
    minority = next(i for i, item in enumerate(train.items) if item.label == 0)
    first, second = train[(minority, 0)][0], train[(minority, 1)][0]
    assert not torch.equal(first, second)
    assert type(first) is torch.Tensor  # not MONAI's MetaTensor


def reads(dataset, index, epochs=(0, 1, 2)):
    out = []
    for epoch in epochs:
        dataset.set_epoch(epoch)
        out.append(dataset[index][0])
    return out


@pytest.mark.parametrize("classes", ["minority", "all"])
def test_validation_and_test_are_never_augmented(cohort_arrays, classes):
    split, labels, paths = cohort_arrays
    datasets = make_datasets(split, labels, paths, AugmentConfig(classes=classes), seed=0)
    flipped = {p: 1 - label for p, label in labels.items()}
    flipped_sets = make_datasets(split, flipped, paths, AugmentConfig(classes=classes), seed=0)
    for part in ("validation", "test"):
        for index, patient_id in enumerate(split[part]):
            cached = torch.from_numpy(np.load(paths[patient_id]))[None]
            for volume in reads(datasets[part], index) + reads(flipped_sets[part], index):
                assert torch.equal(volume, cached)  # bit-identical, whatever the label


def test_training_minority_items_change_and_majority_items_do_not(cohort_arrays):
    split, labels, paths = cohort_arrays
    train = make_datasets(split, labels, paths, AugmentConfig("minority"), seed=0)["train"]
    for index, item in enumerate(train.items):
        cached = torch.from_numpy(np.load(paths[item.patient_id]))[None]
        volumes = reads(train, index)
        if item.label == 0:  # minority
            assert not any(torch.equal(v, cached) for v in volumes)
            assert not torch.equal(volumes[0], volumes[1])  # fresh draws each epoch
        else:
            assert all(torch.equal(v, cached) for v in volumes)
    off = make_datasets(split, labels, paths, AugmentConfig(classes="off"), seed=0)["train"]
    assert all(torch.equal(off[i][0], train[i][0]) for i, it in enumerate(off.items) if it.label)


def neighbour_difference(volume: torch.Tensor) -> float:
    return float((volume[..., 1:] - volume[..., :-1]).abs().mean())


def test_default_augmentation_is_no_label_cue(cohort_arrays):
    """The report's minority-only augmentation lets the label be read off the smoothing that
    the rotation's resampling leaves; the default augments every class alike."""
    from nsclc_engine.stats.metrics import auc_score
    from nsclc_engine.train.config import TrainConfig

    split, labels, paths = cohort_arrays
    assert AugmentConfig().classes == TrainConfig().augment == "all"
    for classes, expected_auc in (("minority", 1.0), ("all", None)):
        train = make_datasets(split, labels, paths, AugmentConfig(classes), seed=0)["train"]
        smoothness = [neighbour_difference(train[i][0]) for i in range(len(train))]
        item_labels = [item.label for item in train.items]
        changed = [
            not torch.equal(train[i][0], torch.from_numpy(np.load(paths[it.patient_id]))[None])
            for i, it in enumerate(train.items)
        ]
        if expected_auc is None:  # every item augmented whatever its label
            assert all(changed)
        else:  # roughness alone separates the classes: the augmented minority is smoother
            assert auc_score(item_labels, smoothness) == expected_auc
    assert TrainConfig(augment="minority").augmentation_warning
    assert not TrainConfig().augmentation_warning


def test_items_are_float32_with_a_channel_and_workers_do_not_change_them(cohort_arrays):
    split, labels, paths = cohort_arrays
    train = make_datasets(split, labels, paths, AugmentConfig(classes="all"), seed=4)["train"]
    volume, label, patient_id = train[0]
    assert volume.shape == (1, 6, 16, 16) and volume.dtype == torch.float32
    assert (label, patient_id) == (0, "P0")
    serial = [batch[0] for batch in DataLoader(train, batch_size=2, num_workers=0)]
    parallel = [batch[0] for batch in DataLoader(train, batch_size=2, num_workers=2)]
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a, b)


def test_augmentation_flips_rows_and_rotates_in_plane_only():
    flip_only = AugmentConfig(max_rotation_deg=0.0, flip_probability=1.0)
    volume = torch.zeros((1, 3, 9, 9))
    volume[0, :, 2, 6] = 1.0
    flipped = augment_volume(volume, flip_only, np.random.default_rng(0))
    assert flipped[0, 1, 6, 6] == 1.0 and flipped[0, 1, 2, 6] == 0.0  # row 2 -> row 6
    rotate_only = AugmentConfig(max_rotation_deg=10.0, flip_probability=0.0)
    square = torch.zeros((1, 4, 32, 32))
    square[0, :, 10:22, 10:22] = 1.0
    rotated = augment_volume(square, rotate_only, np.random.default_rng(3))
    assert not torch.equal(rotated, square)
    assert rotated.sum() == pytest.approx(square.sum().item(), rel=0.02)  # rotation keeps mass
    for z in range(1, 4):  # the same in-plane transform on every slice: nothing moves along z
        assert torch.equal(rotated[0, z], rotated[0, 0])


@pytest.mark.parametrize("angle", [0.12, -0.17, 0.0])
def test_in_plane_rotation_equals_monai_rotate(angle):
    from monai.transforms import Rotate

    volume = torch.rand((1, 5, 24, 32), generator=torch.Generator().manual_seed(1))
    expected = Rotate(
        angle=(angle, 0.0, 0.0), keep_size=True, mode="bilinear", padding_mode="border"
    )(volume).as_tensor()
    torch.testing.assert_close(rotate_in_plane(volume, angle), expected, atol=1e-5, rtol=0)
