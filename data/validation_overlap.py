"""When meta-validation tasks nearly repeat one pool (docs/training.md#validation-size).

A validation task draws its pool from one condition's positives and from the normals of the validation
split. When a pool takes more than half of either, every task holds mostly the same X-rays: the fixed
validation tasks then measure one pool again and again, and picking the best checkpoint on them
overfits that pool (meta-validation overstated the selector by 0.03-0.05 AUROC so, issue 20).
"""
import math

OVERLAP_LIMIT = 0.5  # a pool taking more than this fraction of the available positives (or normals) is warned of


def needed_for_validation(pool_count, query_count):
    """X-rays of one kind a reliable validation needs: enough that a pool takes at most OVERLAP_LIMIT of them
    (and never fewer than one task draws)."""
    return max(math.ceil(pool_count / OVERLAP_LIMIT), pool_count + query_count)


def crowded_validation_warning(positives, num_normals, shape, where):
    """A warning when one task's pool takes more than half of a condition's positives or of the normals, else None.

    positives: {condition: positive X-rays available for validation}; num_normals: normal X-rays available;
    shape: the data.tasks.TaskShape; where: the validation data, named in the message.
    """
    crowded = [f"'{condition}' {shape.pool_positives} of {count} positives" for condition, count in positives.items()
               if shape.pool_positives > OVERLAP_LIMIT * count]
    if shape.pool_negatives > OVERLAP_LIMIT * num_normals:
        crowded.append(f"{shape.pool_negatives} of {num_normals} normals")
    if not crowded:
        return None
    return (f"{where}: each validation task's pool takes most of the X-rays available ({'; '.join(crowded)}), so "
            "the validation tasks nearly repeat one pool and the best-checkpoint choice overfits it. A reliable "
            f"validation at this task shape (pool {shape.pool_size} with {shape.pool_positives} positive, query "
            f"{shape.query_size}) needs at least "
            f"{needed_for_validation(shape.pool_positives, shape.query_positives)} positives of each condition and "
            f"{needed_for_validation(shape.pool_negatives, shape.query_negatives)} normals (a pool then takes at "
            "most half of them; more is better), or a smaller pool (--set UNLABELED_POOL_SIZE=...)")
