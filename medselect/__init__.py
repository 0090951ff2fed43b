"""MedSelect on your own X-rays, from Python: choose which K to label, then classify the rest.

    from medselect import select, classify, ground_truth_auroc

    to_label = select("my_xrays.csv", checkpoint="runs/selector/model_epoch3_iter60", k=20)
    # ... a radiologist labels those X-rays: labeled.csv = Path + a 0/1 column such as "Edema" ...
    predictions = classify("labeled.csv", "Edema", "my_xrays.csv")  # or classifier="label-spreading", ...

Each CSV needs its embeddings in the HDF5 file of the same name beside it
(xray_to_hdf5.py). select_xrays.py and classify_xrays.py are command-line
wrappers over these functions. Run from the repository root (or put it on
``sys.path``).
"""
from medselect.classification import AurocEstimate, classify, ground_truth_auroc
from medselect.pool import Pool, load_pool
from models.classifiers import CLASSIFIERS
from medselect.selection import (DEFAULT_LARGE_POOL, DEFAULT_SELECTION, LARGE_POOL_STRATEGIES, METHODS, SELECTIONS,
                                 select)

__all__ = ["select", "classify", "ground_truth_auroc", "load_pool", "Pool", "AurocEstimate", "METHODS",
           "SELECTIONS", "DEFAULT_SELECTION", "CLASSIFIERS", "LARGE_POOL_STRATEGIES", "DEFAULT_LARGE_POOL"]
