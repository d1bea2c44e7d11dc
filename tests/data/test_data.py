"""The device-resident datasets and their batch augmentation, against references built another way:
digits' fixed split against scikit-learn's own arrays, the normalisation against statistics computed here
in float64, the translation against slices of a padded image; the registry's classes and channels reach
the DataModules, and ImageNet's folder layout is read as torchvision's transforms would read it."""

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vitstudy.data.augment import BatchAugment, shift_and_flip
from vitstudy.data.base import build_datamodule
from vitstudy.data.folder import IMAGENET_MEAN, IMAGENET_STD, ImageNetDataModule
from vitstudy.registry import DATASETS


def _digits(img_size: int = 8, **options):
    dm = build_datamodule("digits", img_size, 64, **options)
    dm.setup()
    return dm


def test_digits_split_is_fixed_stratified_disjoint_and_all_of_the_dataset():
    from sklearn.datasets import load_digits

    a, b = _digits(16), _digits(16, seed=5)
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 1257, "val": 180, "test": 360}
    for k in a.splits:  # the run seed does not move the split
        torch.testing.assert_close(a.splits[k].tensors[0], b.splits[k].tensors[0])
    assert a.splits["train"].tensors[0].shape[1:] == (1, 16, 16)
    counts = torch.bincount(a.splits["test"].tensors[1], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: 360 / 10 per class, ±1
    # the three raw splits together are scikit-learn's 1,797 images with their labels, each once
    digits = load_digits()
    want = Counter((img.astype(np.float32).tobytes(), int(t)) for img, t in zip(digits.images / 16.0,
                                                                                 digits.target, strict=True))
    raw = a.load()
    got = Counter((x[0].numpy().tobytes(), int(y)) for split in raw.values() for x, y in zip(*split, strict=True))
    assert got == want


@pytest.mark.parametrize("dataset, img_size", [("digits", 8), ("synthetic", 12)])
def test_normalisation_uses_the_training_split_statistics(dataset, img_size):
    """Every split is (x − m) / s with m, s the mean and standard deviation of the raw training pixels
    (computed here in float64, over all channels: one pair per dataset), so the normalised training split
    has mean 0 and standard deviation 1."""
    dm = build_datamodule(dataset, img_size, 64)
    dm.setup()
    raw = {k: x.double().numpy() for k, (x, _) in dm.load().items()}
    m, s = raw["train"].mean(), raw["train"].std(ddof=1)
    for name, x in raw.items():
        np.testing.assert_allclose(dm.splits[name].tensors[0].numpy(), (x - m) / s, rtol=0, atol=1e-5)
    train = dm.splits["train"].tensors[0].double()
    assert abs(train.mean().item()) < 1e-6 and train.std().item() == pytest.approx(1, abs=1e-6)


def test_resizing_happens_after_normalisation_with_bilinear_antialiasing_off_when_growing():
    small, big = _digits(8), _digits(16)
    for name in ("train", "val"):
        want = F.interpolate(small.splits[name].tensors[0], size=(16, 16), mode="bilinear", align_corners=False)
        torch.testing.assert_close(big.splits[name].tensors[0], want)


def _padded_crops(x: torch.Tensor, shift: int) -> torch.Tensor:
    """(B, C, H, W) → (B, (2s+1)², C, H, W): every crop of the edge-padded image, offsets row-major."""
    H, W = x.shape[-2:]
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    return torch.stack([padded[..., dy:dy + H, dx:dx + W] for dy in range(2 * shift + 1)
                        for dx in range(2 * shift + 1)], dim=1)


def test_shift_is_a_crop_of_the_edge_padded_image_at_a_uniform_random_offset():
    s, x = 2, torch.randn(500, 3, 7, 9)
    out = shift_and_flip(x, s, False, torch.Generator().manual_seed(0))
    matches = (_padded_crops(x, s) == out[:, None]).flatten(2).all(-1)  # (B, 25)
    assert (matches.sum(1) == 1).all()  # random pixels: exactly one crop fits each image
    offsets = torch.bincount(matches.float().argmax(1), minlength=(2 * s + 1) ** 2)
    assert offsets.min() > 0 and offsets.max() < 3 * 500 / 25  # every offset drawn, none much more often


def test_shift_and_flip_is_a_crop_then_maybe_a_mirror():
    s, x = 1, torch.randn(200, 3, 6, 6)
    out = shift_and_flip(x, s, True, torch.Generator().manual_seed(1))
    crops = _padded_crops(x, s)
    plain = (crops == out[:, None]).flatten(2).all(-1).any(1)
    mirrored = (crops.flip(-1) == out[:, None]).flatten(2).all(-1).any(1)
    assert (plain ^ mirrored).all()  # each image is one of the two, never both
    assert 60 < int(mirrored.sum()) < 140  # mirrored with probability 1/2


class _Fitting:
    """What the DataModule asks of its trainer while Lightning fits."""

    training, global_rank, world_size = True, 0, 1

    def __init__(self, epoch: int):
        self.current_epoch = epoch


def _augmented(dm, epoch: int, batches: int = 2) -> list[torch.Tensor]:
    """The first `batches` training batches of `epoch` (the same 32 images each) as augmented when
    Lightning hands them over."""
    dm.trainer = _Fitting(epoch)
    x = dm.splits["val"].tensors[0][:32]
    return [dm.on_after_batch_transfer((x, None), 0)[0] for _ in range(batches)]


def test_training_batches_are_augmented_and_evaluation_batches_are_not():
    dm = _digits(8, shift=2)
    assert dm.augment == BatchAugment(shift=2)
    x = dm.splits["val"].tensors[0][:32]
    assert torch.equal(dm.on_after_batch_transfer((x, None), 0)[0], x)  # no trainer: as served
    (shifted,) = _augmented(dm, epoch=0, batches=1)
    assert not torch.equal(shifted, x)
    assert (_padded_crops(x, 2) == shifted[:, None]).flatten(2).all(-1).any(1).all()
    dm.trainer.training = False  # validating
    assert torch.equal(dm.on_after_batch_transfer((x, None), 0)[0], x)


def test_batch_augmentation_is_drawn_per_seed_epoch_and_batch_not_from_the_global_rng():
    torch.manual_seed(1)
    first = _augmented(_digits(8, shift=2, random_erasing=0.5, seed=3), epoch=4)
    torch.manual_seed(2)
    dm = _digits(8, shift=2, random_erasing=0.5, seed=3)
    again = _augmented(dm, epoch=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])  # batch 1 draws anew
    assert not torch.equal(_augmented(dm, epoch=5)[0], first[0])  # so does the next epoch
    dm.train_dataloader()  # a new fit counts its batches from the start
    assert torch.equal(_augmented(dm, epoch=4, batches=1)[0], first[0])
    other_seed = _augmented(_digits(8, shift=2, random_erasing=0.5, seed=4), epoch=4)
    assert not torch.equal(other_seed[0], first[0])


def test_no_two_seeds_share_a_shuffle_at_any_epoch():
    def order(seed: int, epoch: int) -> list[int]:
        sampler = _digits(8, seed=seed).sampler(1257, train=True)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(1, 0) != order(0, 1) and order(2, 0) != order(1, 1)
    assert order(1, 3) == order(1, 3)


def test_per_image_augmentation_is_drawn_per_seed_epoch_and_position_whatever_the_workers():
    """RandAugment in DataLoader workers: the images do not depend on the number of workers or on the
    global RNG, only on the seed and the epoch."""

    def epoch_images(workers: int, seed: int = 0, epoch: int = 0) -> torch.Tensor:
        dm = build_datamodule("digits", 8, 32, train_subset=96, randaugment="rand-m9-mstd0.5-inc1",
                              num_workers=workers, seed=seed)
        dm.setup()
        assert dm.pipeline["mode"] == "workers"
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)  # as Lightning does at the start of every epoch
        return torch.cat([x for x, _ in loader])

    def images(x: torch.Tensor) -> set[bytes]:
        return {img.numpy().tobytes() for img in x}

    torch.manual_seed(1)
    alone = epoch_images(workers=0)
    torch.manual_seed(2)
    assert torch.equal(epoch_images(workers=2), alone)
    # the same 96 images each epoch, drawn anew (a few are left as they were in both by chance)
    assert len(images(epoch_images(workers=0, epoch=1)) & images(alone)) < 96 / 2
    assert len(images(epoch_images(workers=0, seed=1)) & images(alone)) < 96 / 2


@pytest.mark.parametrize("dataset", ["digits", "synthetic", "mnist", "cifar100", "imagenet"])
def test_classes_and_channels_come_from_the_registry(dataset, tmp_path):
    meta = DATASETS.entry(dataset).meta
    dm = build_datamodule(dataset, 8, 4, root=str(tmp_path))
    assert (dm.num_classes, dm.in_chans) == (meta["num_classes"], meta["in_chans"])


def test_synthetic_images_have_the_registry_channels_and_classes():
    dm = build_datamodule("synthetic", 12, 32)
    dm.setup()
    x, y = dm.splits["train"].tensors
    assert x.shape[1:] == (3, 12, 12) and set(y.tolist()) == set(range(10))


def test_a_model_with_fewer_classes_than_the_data_is_refused_at_setup():
    dm = build_datamodule("digits", 8, 64, num_classes=5)
    with pytest.raises(ValueError, match=r"labels up to 9, but the model takes 1 channels and 5 classes"):
        dm.setup()


def test_a_folder_dataset_needs_its_class_count():
    with pytest.raises(ValueError, match=r"'imagefolder' takes its classes from its folders"):
        build_datamodule("imagefolder", 8, 4)


def _image_folder(root, classes=3, per_class=4, size=40):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / "imagenet" / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size + 5, 3), dtype=np.uint8)).save(d / f"{i}.JPEG",
                                                                                               format="PNG")


def test_imagenet_reads_the_standard_folder_layout(tmp_path):
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    _image_folder(tmp_path)
    dm = build_datamodule("imagenet", img_size=32, batch_size=4, root=str(tmp_path), num_workers=0,
                          num_classes=3)
    assert isinstance(dm, ImageNetDataModule)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.long
    assert len(dm.splits["train"]) == 12 and dm.splits["test"] is dm.splits["val"]
    xv, yv = next(iter(dm.val_dataloader()))
    assert yv.tolist() == [0, 0, 0, 0]  # sorted, class folder 0 first
    expected = transforms.Compose([transforms.Resize(36, interpolation=InterpolationMode.BICUBIC),
                                   transforms.CenterCrop(32), transforms.ToTensor(),
                                   transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    first = tmp_path / "imagenet" / "val" / "n00000000" / "0.JPEG"
    torch.testing.assert_close(xv[0], expected(Image.open(first).convert("RGB")))


def test_imagenet_with_another_class_count_than_the_model_says_so(tmp_path):
    _image_folder(tmp_path)
    dm = build_datamodule("imagenet", img_size=32, batch_size=4, root=str(tmp_path), num_workers=0)
    with pytest.raises(ValueError, match=r"holds 3 class folders but the model has num_classes=1000"):
        dm.setup()


def test_missing_imagenet_says_where_to_put_it(tmp_path):
    dm = build_datamodule("imagenet", img_size=32, batch_size=4, root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"imagenet/train.*imagenet/val.*cannot be downloaded"):
        dm.prepare_data()
