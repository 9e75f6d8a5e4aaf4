"""Bad input gets one clear line saying what was wrong and what to do; nothing on disk is harmed."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import zoo
from zoo.cards import write_folder
from zoo.files import sha256_file


@pytest.fixture
def card(tmp_path):
    """A complete weight folder of a randomly initialised LeNet-5."""
    torch.manual_seed(0)
    model = zoo.create("lenet5")
    return write_folder(
        tmp_path / "lenet5.test", model.net.state_dict(), model.model_config("lenet5.test"), {"test_acc": 0.1}
    )


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and len(text) < 400, text
    return text


def test_unknown_model_names_closest() -> None:
    with pytest.raises(zoo.UnknownModelError) as info:
        zoo.create("lenet_5")
    assert "lenet5" in _one_line(info.value)


def test_unknown_tag_lists_available_tags() -> None:
    with pytest.raises(zoo.UnknownModelError) as info:
        zoo.load("lenet5.cifar10")
    assert "lenet5.fmnist" in _one_line(info.value)


def test_wrong_channels() -> None:
    model = zoo.create("lenet5")
    with pytest.raises(zoo.InputShapeError) as info:
        model(torch.rand(2, 3, 28, 28))
    assert "1-channel" in _one_line(info.value) and "in_chans=3" in str(info.value)


def test_wrong_image_size_where_it_matters() -> None:
    model = zoo.create("lenet5")
    with pytest.raises(zoo.InputShapeError) as info:
        model(torch.rand(2, 1, 32, 32))
    assert "28×28" in _one_line(info.value)


def test_missing_batch_dimension() -> None:
    with pytest.raises(zoo.InputShapeError, match="x\\[None\\]"):
        zoo.create("lenet5")(torch.rand(1, 28, 28))


def test_round_trip_of_a_written_folder(card) -> None:
    model = zoo.load(str(card))
    assert model.weights_name == "lenet5.test" and not model.training
    torch.manual_seed(0)
    reference = zoo.create("lenet5").eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model(x), reference(x))


def test_tampered_weights_fail_the_hash(card) -> None:
    before = (card / "model.safetensors").read_bytes()
    data = bytearray(before)
    data[-10] ^= 0xFF
    (card / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(zoo.WeightsError) as info:
        zoo.load(str(card))
    assert "sha256" in _one_line(info.value) and "tampered" in str(info.value)


def test_corrupt_safetensors_is_reported(card) -> None:
    (card / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (card / "metrics.json").unlink()  # no hash to check: the reader itself must catch it
    with pytest.raises(zoo.WeightsError) as info:
        zoo.load(str(card))
    assert "not a readable safetensors file" in _one_line(info.value)


def test_config_cannot_name_a_python_class(card) -> None:
    config = json.loads((card / "config.json").read_text())
    config["architecture"] = "os.system"
    (card / "config.json").write_text(json.dumps(config))
    with pytest.raises(zoo.UnknownModelError) as info:
        zoo.load(str(card))
    assert "unknown model" in _one_line(info.value)


def test_state_dict_of_another_shape_names_the_keys(card) -> None:
    from safetensors.torch import load_file

    from zoo.pretrained import load_net_state

    model = zoo.create("lenet5", num_classes=5)
    with pytest.raises(zoo.WeightsError) as info:
        load_net_state(model.net, "lenet5", load_file(str(card / "model.safetensors")), num_classes=5, in_chans=1)
    assert "head.fc.weight" in _one_line(info.value)


def test_rewriting_a_card_keeps_the_old_one_until_the_new_one_is_complete(card) -> None:
    """write_folder builds beside the target; a failure leaves the existing folder untouched."""
    original = sha256_file(card / "model.safetensors")
    with pytest.raises(AttributeError):
        write_folder(card, {"w": object()}, {}, {})  # not a tensor: fails while staging
    assert sha256_file(card / "model.safetensors") == original
    assert not [p for p in card.parent.iterdir() if p.name.startswith(".")], "staging folder left behind"
    shutil.rmtree(card)


def test_save_pretrained_never_deletes_the_users_files(tmp_path) -> None:
    target = tmp_path / "mine"
    (target / "src").mkdir(parents=True)
    (target / "important.txt").write_text("notes")
    (target / "src" / "code.py").write_text("print('hi')\n")
    model = zoo.create("lenet5")
    with pytest.raises(zoo.ZooError) as info:
        model.save_pretrained(target)
    assert "important.txt" in _one_line(info.value) and "overwrite=True" in str(info.value)
    assert sorted(p.name for p in target.iterdir()) == ["important.txt", "src"]
    model.save_pretrained(target, overwrite=True)  # asked for: the weight files join the user's files
    assert (target / "important.txt").read_text() == "notes" and (
        target / "src" / "code.py"
    ).read_text() == "print('hi')\n"
    assert torch.equal(zoo.load(target).net.head.fc.weight, model.net.head.fc.weight)


def test_save_pretrained_onto_a_file_is_refused(tmp_path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"keep me")
    with pytest.raises(zoo.ZooError) as info:
        zoo.create("lenet5").save_pretrained(target)
    assert "is a file" in _one_line(info.value) and target.read_bytes() == b"keep me"


def test_save_pretrained_replaces_its_own_folder(card) -> None:
    torch.manual_seed(1)
    model = zoo.create("lenet5")
    model.save_pretrained(card)
    assert sorted(p.name for p in card.iterdir()) == ["README.md", "config.json", "metrics.json", "model.safetensors"]
    assert torch.equal(zoo.load(card).net.head.fc.weight, model.net.head.fc.weight)
