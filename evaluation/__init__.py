"""What evaluate.py computes beyond the per-method AUROC: what each method selects (selection_analysis), and the
budget and prevalence curves (curves)."""
