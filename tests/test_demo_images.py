"""The demo's synthetic images: the planted poor-acquisition source, and the random encoder's calibrated batch norm."""
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from data.images import load_xray, normalize
from data.synthetic import ACQUISITION_COLUMN, POOR, STANDARD
from data.synthetic_images import CHEXPERT_FOLDER, write_chexpert_like_folder, write_xray_image
from models.random_weights import calibrate_batch_norm, moco_checkpoint

SIZE = 96
FINDING_CENTRE = (int(0.75 * SIZE), int(0.5 * SIZE))  # (x, y) of finding 0 (angle 0), a bright patch


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64)


def render(tmp_path, name, findings, poor):
    path = str(tmp_path / f"{name}.jpg")
    write_xray_image(path, SIZE, SIZE, findings, np.random.default_rng(7), poor_acquisition=poor)
    return pixels(path)


def test_poor_acquisition_hides_the_findings_and_adds_a_border(tmp_path):
    standard, standard_ill = render(tmp_path, "s", [], False), render(tmp_path, "si", [0, 3], False)
    poor, poor_ill = render(tmp_path, "p", [], True), render(tmp_path, "pi", [0, 3], True)
    x, y = FINDING_CENTRE
    # Finding 0 adds at least 60 grey levels at its centre (times the exposure gain, about 1) ...
    assert standard_ill[y, x] - standard[y, x] > 40
    # ... but a poor-acquisition picture of the same X-ray is the same with or without its findings.
    np.testing.assert_array_equal(poor_ill, poor)
    border = np.concatenate([poor[:3].ravel(), poor[-3:].ravel(), poor[:, :3].ravel(), poor[:, -3:].ravel()])
    assert border.min() > 220 and standard[:3].mean() < 120


def test_the_csv_names_the_poor_studies_and_their_images_show_it(tmp_path):
    csv_path = write_chexpert_like_folder(str(tmp_path), num_patients=20, seed=1, sizes=[(SIZE, SIZE)],
                                          poor_fraction=0.5)
    frame = pd.read_csv(csv_path)
    assert set(frame[ACQUISITION_COLUMN]) == {STANDARD, POOR}
    for _, row in frame.iterrows():
        corner = pixels(tmp_path / row["Path"])[:3, :3].mean()
        assert (corner > 220) == (row[ACQUISITION_COLUMN] == POOR), row["Path"]
    study = frame["Path"].str.rsplit("/", n=1).str[0]
    assert (frame.groupby(study)[ACQUISITION_COLUMN].nunique() == 1).all()  # every view of a study alike
    assert "PLANTED" in (tmp_path / CHEXPERT_FOLDER / "README.txt").read_text()


def test_calibrated_batch_norm_holds_the_images_statistics(tmp_path):
    paths = []
    for i, findings in enumerate([[], [0, 2], [5]]):
        paths.append(str(tmp_path / f"x{i}.jpg"))
        write_xray_image(paths[-1], SIZE, SIZE + 20, findings, np.random.default_rng(i), poor_acquisition=i == 2)
    checkpoint = moco_checkpoint("resnet18", "mlp", queue_length=16, seed=0, share_momentum_encoder=True)
    state = checkpoint["state_dict"]
    random_mean = state["module.encoder_q.bn1.running_mean"].clone()
    calibrate_batch_norm(checkpoint, paths)

    # The first batch norm sees conv1's output: its statistics, computed here independently.
    images = normalize(torch.stack([load_xray(p) for p in paths]))  # (3, 3, 320, 320)
    features = F.conv2d(images, state["module.encoder_q.conv1.weight"], stride=2, padding=3)  # (3, 64, 160, 160)
    channels = features.transpose(0, 1).reshape(64, -1)  # (64, 3 * 160 * 160)
    torch.testing.assert_close(state["module.encoder_q.bn1.running_mean"], channels.mean(1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(state["module.encoder_q.bn1.running_var"], channels.var(1), rtol=1e-3, atol=1e-4)
    assert not torch.allclose(random_mean, channels.mean(1), atol=1e-2)
    assert int(state["module.encoder_q.bn1.num_batches_tracked"]) == 1
    assert state["module.encoder_k.bn1.running_mean"] is state["module.encoder_q.bn1.running_mean"]
