"""The selector options the benchmarks compare: name -> --set settings (docs/training.md#selector-options).

The first is the paper's method (constants.py's defaults); 'combined' is every option at once.
"""
OPTION_SETS = {
    "paper (BiLSTM)": [],
    "pool features": ["POOL_FEATURES=True"],
    "attention": ["SELECTOR=attention"],
    "distinct": ["POLICY=distinct"],
    "leave-one-out (S=4)": ["SAMPLES_PER_TASK=4", "REWARD_BASELINE=leave-one-out"],
    "combined": ["POOL_FEATURES=True", "SELECTOR=attention", "POLICY=distinct", "SAMPLES_PER_TASK=4",
                 "REWARD_BASELINE=leave-one-out"],
}
