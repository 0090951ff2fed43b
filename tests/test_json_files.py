"""utils/json_files: a labelling record that is absent, unreadable or not an object reads as {}."""
import json

from utils.json_files import read_json_object


def test_an_object_is_read_and_anything_else_is_empty(tmp_path):
    good = tmp_path / "config.json"
    good.write_text(json.dumps({"seed": 3, "config": {"K": 5}}))
    assert read_json_object(good) == {"seed": 3, "config": {"K": 5}}
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text("{not json")
    for name in ("list.json", "broken.json", "absent.json"):
        assert read_json_object(tmp_path / name) == {}
    assert read_json_object(tmp_path) == {}  # a folder: unreadable as a file
