"""The small real datasets behind the fine-tuning defaults (``experiments/finetune_datasets.py``), each derived
here independently: new images of real data, never the images another set trains on, with the looks, classes and
scored images ``docs/finetuning.md`` says."""

from __future__ import annotations

import torch
from test_finetune_defaults_measured import _datasets, _experiment


def test_held_out_sets_are_new_images_of_real_data() -> None:
    """The held-out sets: digits10 draws other digits than the test it scores on; fmnist5to9 is classes 5-9 of
    the training split (relabelled 0-4); fmnistinv10 is the training split inverted and turned."""
    from sklearn.datasets import load_digits

    from zoo.data.fashion_mnist import load_split

    experiment = _experiment()
    (x, y), (tx, ty), _ = experiment.dataset("digits10")
    assert len(y) + len(ty) == len(load_digits().target) and torch.bincount(y).tolist() == [10] * 10
    assert not (x.flatten(1)[:, None] == tx.flatten(1)[None]).all(-1).any()  # no training image is scored
    (x, y), (tx, ty), names = experiment.dataset("fmnist5to9")
    train_images, train_labels = load_split("train")
    assert len(names) == 5 and torch.bincount(y).tolist() == [25] * 5 and len(ty) == 5000
    first = (train_images == x[0, 0]).flatten(1).all(1).nonzero().flatten()
    assert int(train_labels[first[0]]) == int(y[0]) + 5
    (x, y), (tx, ty), _ = experiment.dataset("fmnistinv10")
    test_images, test_labels = load_split("test")
    assert torch.equal(tx[0, 0], (255 - test_images[5000]).rot90(1, (0, 1))) and torch.equal(ty, test_labels[5000:])


def test_sets_built_after_the_head_rule_are_unseen_images_of_real_data() -> None:
    """fmnist50b, fmnist0to4own10 and fmnistnoise25 train on test images 0-4,999 that no other set trains on
    (each class's 101st image on: fmnist100 takes the first 100) and score on the last 5,000; the noise is
    σ = 0.15 of the range; digitsinv25 is 255 − the digits."""
    from sklearn.datasets import load_digits

    from zoo.data.fashion_mnist import load_split

    experiment = _experiment()
    images, labels = load_split("test")
    taken = experiment.dataset("fmnist100")[0][0].flatten(1)
    rows = {}
    for name, classes, per_class in (("fmnist50b", 10, 50), ("fmnist0to4own10", 5, 10), ("fmnistnoise25", 10, 25)):
        (x, y), (tx, ty), names = experiment.dataset(name)
        assert len(names) == classes and torch.bincount(y).tolist() == [per_class] * classes, name
        assert torch.equal(ty, labels[5000:][labels[5000:] < classes]), name
        rows[name] = x.flatten(1)
        if name != "fmnistnoise25":  # the images themselves, among the first 5,000 and not fmnist100's
            found = (x.flatten(1)[:, None] == images[:5000].flatten(1)[None]).all(-1)
            assert bool(found.any(1).all()) and not (x.flatten(1)[:, None] == taken[None]).all(-1).any(), name
        else:
            clean = images[:5000][torch.cat([(labels[:5000] == c).nonzero().flatten()[160:185] for c in range(10)])]
            noise = (x.float() - clean[:, None].float())[(clean[:, None] > 40) & (clean[:, None] < 215)]
            assert 0.13 * 255 < float(noise.std()) < 0.17 * 255 and abs(float(noise.mean())) < 2
    assert not (rows["fmnist50b"][:, None] == rows["fmnist0to4own10"][None]).all(-1).any()
    (x, y), (tx, ty), _ = experiment.dataset("digitsinv25")
    (cx, cy), _, _ = _datasets()._digits(25, 5)
    assert torch.equal(x, 255 - cx) and torch.equal(y, cy) and len(y) + len(ty) == len(load_digits().target)


def test_sets_built_after_the_cap_are_unseen_images_of_real_data() -> None:
    """fmnistcoarse24: 24 test images 0-4,999 per coarse class (6 of each top, 12 of trousers and of dresses, 8 of
    each shoe, 24 bags), from each garment's 186th on (fmnistnoise25 takes up to the 185th), scored on the last
    5,000 coarsened alike; fmnistblur25 and fmnistrot10: training-split images blurred / turned a quarter
    clockwise, the scored images given the same look."""
    from torchvision.transforms.v2 import functional as TF

    from zoo.data.fashion_mnist import load_split

    images, labels = load_split("test")
    (x, y), (tx, ty), names = _datasets().dataset("fmnistcoarse24")
    assert names == ["tops", "trousers_dresses", "footwear", "bags"] and torch.bincount(y).tolist() == [24] * 4
    group = {0: 0, 2: 0, 4: 0, 6: 0, 1: 1, 3: 1, 5: 2, 7: 2, 9: 2, 8: 3}
    assert ty.tolist() == [group[int(c)] for c in labels[5000:]] and torch.equal(tx[:, 0], images[5000:])
    rows = (x.flatten(1)[:, None] == images[:5000].flatten(1)[None]).all(-1)
    found = rows.float().argmax(1)
    assert bool(rows.any(1).all()) and [group[int(labels[i])] for i in found] == y.tolist()
    rank = {int(i): int((labels[:i] == labels[i]).sum()) for i in found}  # each image's place within its garment
    per_garment = [24 // len(m) for c in range(10) for m in _datasets().COARSE if c in m]  # 6, 12, 6, 12, ...
    assert min(rank.values()) == 185 and torch.bincount(labels[found], minlength=10).tolist() == per_garment
    train_images, train_labels = load_split("train")
    for name, per_class in (("fmnistblur25", 25), ("fmnistrot10", 10)):
        (x, y), (tx, ty), _ = _datasets().dataset(name)
        assert torch.bincount(y).tolist() == [per_class] * 10 and torch.equal(ty, labels[5000:]), name
        if name == "fmnistblur25":
            first = TF.gaussian_blur(images[5000:5001], [5, 5], [1.5, 1.5])
            assert torch.equal(tx[0], first) and not torch.equal(tx[0, 0], images[5000])
            assert float(x.float().std()) < float(train_images[:1000].float().std())  # blurring lowers the contrast
        else:
            assert torch.equal(tx[0, 0], images[5000].rot90(-1, (0, 1)))
            back = x[:, 0].rot90(1, (1, 2))  # turned back: the training split's own images, with their labels
            index = {image.numpy().tobytes(): int(label) for image, label in zip(train_images, train_labels)}
            assert [index.get(image.contiguous().numpy().tobytes()) for image in back] == y.tolist()


def test_sets_built_last_are_unseen_images_of_real_data() -> None:
    """fmnisttops20: test images 0-4,999 of the four tops, each one's 201st-220th (past fmnistcoarse24's, which end
    at the 191st), labelled shirt, coat, pullover, T-shirt, scored on the last 5,000 test images of those four;
    fmnistsmall15: 15 training-split images per class shrunk into the top-left 16×16 corner (the rest black), the
    scored images the last 5,000 test images shrunk alike."""
    from zoo.data.fashion_mnist import load_split

    images, labels = load_split("test")
    (x, y), (tx, ty), names = _datasets().dataset("fmnisttops20")
    garment = {0: 6, 1: 4, 2: 2, 3: 0}  # Fashion-MNIST: 0 T-shirt/top, 2 pullover, 4 coat, 6 shirt
    assert names == ["shirt", "coat", "pullover", "tshirt"] and torch.bincount(y).tolist() == [20] * 4
    tops = torch.isin(labels[5000:], torch.tensor([0, 2, 4, 6]))
    assert torch.equal(tx[:, 0], images[5000:][tops]) and [garment[int(c)] for c in ty] == labels[5000:][tops].tolist()
    rows = (x.flatten(1)[:, None] == images[:5000].flatten(1)[None]).all(-1)
    found = rows.float().argmax(1)
    assert bool(rows.any(1).all()) and labels[found].tolist() == [garment[int(c)] for c in y]
    ranks = sorted({int((labels[:i] == labels[i]).sum()) for i in found.tolist()})
    assert ranks == list(range(200, 220))
    train_images, train_labels = load_split("train")
    (x, y), (tx, ty), _ = _datasets().dataset("fmnistsmall15")
    assert torch.bincount(y).tolist() == [15] * 10 and torch.equal(ty, labels[5000:])
    assert int(x[:, :, 16:].sum()) == int(x[:, :, :, 16:].sum()) == int(tx[:, :, 16:].sum()) == 0
    # against another shrink (bilinear with antialiasing, not the set's area average): the scored images are the
    # last 5,000 test images, and each training image is closest to a training-split image of its own class
    import torch.nn.functional as F

    def shrink(v):
        return F.interpolate(v.float()[:, None], size=(16, 16), mode="bilinear", antialias=True)[:, 0]

    assert float((tx[:, 0, :16, :16].float() - shrink(images[5000:])).abs().mean()) < 8
    nearest = torch.cdist(x[:, 0, :16, :16].flatten(1).float(), shrink(train_images).flatten(1)).argmin(1)
    assert torch.equal(train_labels[nearest], y)
    assert float((x[:, 0, :16, :16].float() - shrink(train_images[nearest])).abs().mean()) < 8


def test_sets_built_after_the_average_are_unseen_images_of_real_data() -> None:
    """fmnistdim20: 20 training-split images per class dimmed to 40 + 0.35 × the pixel (inverted here: each is a
    training-split image of its own label); fmnistzoom25: 25 per class zoomed in 1.5× (each closest, against
    another resize, to a training-split image of its own class); both scored on the last 5,000 test images given the
    same look."""
    import torch.nn.functional as F

    from zoo.data.fashion_mnist import load_split

    images, labels = load_split("test")
    train_images, train_labels = load_split("train")
    (x, y), (tx, ty), names = _datasets().dataset("fmnistdim20")
    assert torch.bincount(y).tolist() == [20] * 10 and torch.equal(ty, labels[5000:]) and len(names) == 10
    assert (int(x.min()), int(x.max()), int(tx.min()), int(tx.max())) == (40, 129, 40, 129)
    assert float((tx[:, 0].float() - (40 + 0.35 * images[5000:].float())).abs().max()) <= 0.5
    undone = ((x[:, 0].float() - 40) / 0.35).round().clamp(0, 255)  # to within a grey level of the source
    near = torch.cdist(undone.flatten(1), train_images.flatten(1).float()).min(1)
    assert float(near.values.max()) < 28 * 2 and torch.equal(train_labels[near.indices], y)  # ≤ 2 levels a pixel
    (x, y), (tx, ty), _ = _datasets().dataset("fmnistzoom25")
    assert torch.bincount(y).tolist() == [25] * 10 and torch.equal(ty, labels[5000:])

    def zoom(v):  # the central 18 px, bilinear without antialiasing (the set antialiases)
        return F.interpolate(v.float()[:, None, 5:23, 5:23], size=(28, 28), mode="bilinear")[:, 0]

    assert float((tx[:, 0].float() - zoom(images[5000:])).abs().mean()) < 8
    nearest = torch.cdist(x[:, 0].flatten(1).float(), zoom(train_images).flatten(1)).argmin(1)
    assert torch.equal(train_labels[nearest], y)
