"""utils/csv_text: the one writer of metrics.csv and evaluate.py's CSVs, checked against hand-written text and pandas."""
import io

import pandas as pd

from utils.csv_text import csv_text


def test_header_then_rows_blank_for_none_or_missing_and_crlf_lines():
    assert csv_text([{"a": 1, "b": None}, {"a": 2.5}], ["a", "b"]) == "a,b\r\n1,\r\n2.5,\r\n"


def test_columns_in_the_given_order_and_quoting_read_back_by_pandas():
    rows = [{"text": 'has "quotes", and a comma', "n": 3}, {"n": -1, "text": "plain"}]
    text = csv_text(rows, ["n", "text"])
    assert text.splitlines()[0] == "n,text"
    expected = pd.DataFrame({"n": [3, -1], "text": ['has "quotes", and a comma', "plain"]})
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(text)), expected)


def test_no_rows_is_the_header_alone():
    assert csv_text([], ["epoch", "auroc"]) == "epoch,auroc\r\n"
