"""Which chest X-ray labels an encoder's weights were trained to predict: the label-leakage guard.

MedSelect's "unseen conditions" result (the paper's held-out Atelectasis and
Edema) means something only if nothing in the pipeline was trained with those
labels. An encoder trained to predict them already separates them in its
embedding, so a selector looks good on them without having learnt to select.
evaluate.py warns when the test embeddings come from such weights.

Sources of the table below:

* torchxrayvision 1.5.7, ``torchxrayvision/models.py``: ``model_urls[name]``
  gives each weights' training datasets (its description and file name) and
  18 output ``labels``; an output with a label and an operating-point threshold
  (``op_threshs`` not NaN) was trained, the others predict nothing (the
  library's README: "for the other weights some targets are not trained and
  will predict randomly"). tests/test_encoders.py checks this table against
  the installed library.
* Cohen et al., "On the limits of cross-domain generalization in automated
  X-ray prediction", MIDL 2020 (arXiv:2002.02497): the DenseNet-121 models,
  one per dataset and "all" trained on all of them.
* Cohen et al., "TorchXRayVision: A library of chest X-ray datasets and
  models", MIDL 2022 (arXiv:2111.00595): the library and the ResNet-50 at 512.
* MoCo-CXR (Sowrirajan et al., MIDL 2021, arXiv:2010.05352): contrastive
  pre-training on CheXpert images without their labels, so no label at all.

timm weights can be anything (ImageNet, self-supervised, a chest X-ray
classifier): their labels are unknown, and the user has to judge.
"""
# torchxrayvision's label names; the outputs each weights file was trained on. Datasets: NIH ChestX-ray14
# (nih), PadChest (pc), CheXpert (chex), MIMIC-CXR labelled by the CheXpert (mimic_ch) or NegBio (mimic_nb)
# labeller, NIH relabelled by Google (google), OpenI, RSNA Pneumonia (rsna/kaggle), SIIM Pneumothorax (siim),
# VinDr-CXR (vin).
NIH_LABELS = ("Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
              "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia")
CHEXPERT_LABELLER_LABELS = ("Atelectasis", "Consolidation", "Pneumothorax", "Edema", "Effusion", "Pneumonia",
                            "Cardiomegaly", "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum")
TORCHXRAYVISION_WEIGHTS = {
    # name: (training datasets, labels trained)
    "densenet121-res224-all": ("nih, pc, chex, mimic_ch, google, openi, rsna",
                               NIH_LABELS + ("Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum")),
    "densenet121-res224-nih": ("nih", NIH_LABELS),
    "densenet121-res224-pc": ("pc", NIH_LABELS + ("Fracture",)),
    "densenet121-res224-chex": ("chex", CHEXPERT_LABELLER_LABELS),
    "densenet121-res224-rsna": ("rsna", ("Pneumonia", "Lung Opacity")),
    "densenet121-res224-mimic_nb": ("mimic_nb", CHEXPERT_LABELLER_LABELS),
    "densenet121-res224-mimic_ch": ("mimic_ch", CHEXPERT_LABELLER_LABELS),
    "resnet50-res512-all": ("pc, nih, rsna, siim, vin", NIH_LABELS + ("Fracture", "Lung Opacity")),
}
# torchxrayvision also accepts the DenseNets' short names ("all", "nih", ...).
SHORT_NAMES = {name.rsplit("-", 1)[1]: name for name in TORCHXRAYVISION_WEIGHTS if name.startswith("densenet121")}
# torchxrayvision's label names (NIH's) that CheXpert's names differ from: a condition may carry either
# (prepare_data.py gives NIH's findings CheXpert's names where CheXpert has them; an own CSV may not).
CHEXPERT_NAME = {"Effusion": "Pleural Effusion"}


def canonical_weights_name(name):
    """'all' -> 'densenet121-res224-all'; a full name as it is; None for a name not in the table."""
    name = SHORT_NAMES.get(name, name)
    return name if name in TORCHXRAYVISION_WEIGHTS else None


def conditions_trained_on(origin):
    """The condition names the encoder of ``origin`` (an EmbeddingOrigin) was trained to predict, in
    torchxrayvision's and in CheXpert's naming: a frozenset (empty for MoCo-CXR), or None when unknown (timm
    weights, files without a recorded encoder)."""
    if origin is None:
        return None
    if origin.encoder == "moco":
        return frozenset()
    if origin.encoder == "torchxrayvision":
        name = canonical_weights_name(origin.weights)
        if name is None:
            return None
        labels = TORCHXRAYVISION_WEIGHTS[name][1]
        return frozenset(labels) | frozenset(CHEXPERT_NAME.get(label, label) for label in labels)
    return None


def label_leakage(origin, held_out_conditions):
    """The held-out conditions (in their order) that the encoder of ``origin`` was trained to predict."""
    trained = conditions_trained_on(origin) or frozenset()
    return [c for c in held_out_conditions if c in trained]


def leakage_warning(origin, held_out_conditions):
    """One sentence for the log and results.md when the held-out result is compromised, else None."""
    leaked = label_leakage(origin, held_out_conditions)
    if not leaked:
        return None
    datasets = TORCHXRAYVISION_WEIGHTS[canonical_weights_name(origin.weights)][0]
    return (f"LABEL LEAKAGE: the test embeddings ({origin.source}) come from {origin.describe()}, trained on "
            f"{datasets} with labels that include the held-out condition(s) {', '.join(leaked)}; the 'unseen' "
            "results below do not measure selection of unseen conditions. Use MoCo-CXR or other weights "
            "trained without these labels (docs/embedding.md).")


def unknown_labels_note(origin, held_out_conditions):
    """For encoders whose training labels are unknown (timm weights): a reminder to check them, else None."""
    if origin is None or not held_out_conditions or conditions_trained_on(origin) is not None:
        return None
    return (f"note: the labels {origin.describe()} was trained with are unknown; the 'unseen' results assume they "
            f"do not include {', '.join(held_out_conditions)}")
