"""One reading of a comma-separated option of names (evaluate.py's --methods, --classifiers)."""
from utils.errors import UserError


def parse_names(text, option, valid, noun):
    """'a, b,a' -> ['a', 'b']: order kept, repeats dropped; an unknown name, or none, is one UserError line
    naming ``option`` and the valid ``noun``s."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise UserError(f"{option}: unknown {noun}(s) {', '.join(unknown) or '(none given)'}; "
                        f"valid: {', '.join(valid)}")
    return list(dict.fromkeys(names))
