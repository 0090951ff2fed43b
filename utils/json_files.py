"""Reading a small JSON record that only labels something (a run's config.json, prepare_data.json)."""
import json


def read_json_object(path):
    """The JSON object in ``path`` as a dict; {} when the file is absent, unreadable or not an object,
    because such a record only adds information and its absence must not stop a command."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
