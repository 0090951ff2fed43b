"""bench/train_step.py's projection of the default meta-training's run time (quoted by docs/before_you_start.md)."""
import argparse

import pytest

from bench.train_step import default_training_hours


def test_default_training_counts_steps_and_validations_as_run_selector_runs_them():
    # Hand-worked: 10,000 tasks per epoch in batches of 64 are ceil(156.25) = 157 steps, 5 epochs 785 steps;
    # meta-validation at steps 30, 60, 90, 120, 150 of each epoch (25) and after the very last step (1).
    steps, validations, hours = default_training_hours(argparse.Namespace(batch=64), 1000.0, 10_000.0)
    assert (steps, validations) == (785, 26)
    assert hours == pytest.approx((785 * 1.0 + 26 * 10.0) / 3600)


def test_a_last_step_that_is_a_validation_step_is_not_counted_twice():
    # batch 334: ceil(29.94) = 30 steps per epoch, the last of each a validation step, the run's last included
    assert default_training_hours(argparse.Namespace(batch=334), 1.0, 1.0)[:2] == (150, 5)
    # batch 100: 100 steps per epoch, validations at 30, 60, 90 of each of 5 epochs, and after step 500
    assert default_training_hours(argparse.Namespace(batch=100), 1.0, 1.0)[:2] == (500, 16)
    # batch 5000: 2 steps per epoch, no validation within an epoch, one after the last step
    assert default_training_hours(argparse.Namespace(batch=5000), 1.0, 1.0)[:2] == (10, 1)
