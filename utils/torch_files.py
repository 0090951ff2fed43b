"""Why a file torch.load (or a library built on it) could not read is not a checkpoint, in a few words.

PyTorch's own message for a foreign file is several lines long and, for weights_only loads, advises
re-running with weights_only=False, which is no advice for a CSV given by mistake. Reads no torch.
"""
HEAD_BYTES = 256  # read to tell a text file from a binary one
SHOWN = 40  # characters of a text file's first line quoted


def unreadable_reason(path, err):
    """One line: 'a text file, not a PyTorch file (it begins ...)' for a CSV or other text, else the first line of
    ``err`` without PyTorch's weights_only advice."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        head = b""
    if head and _is_text(head):
        first = head.decode("utf-8", errors="replace").splitlines()[0][:SHOWN]
        return f"a text file, not a PyTorch file (it begins {first!r})"
    text = str(err).strip()
    if "weights_only" in text:  # torch >= 2.6: 'Weights only load failed ... Re-running torch.load with ...'
        return "not a PyTorch file of tensors (it holds other objects, or is no PyTorch file at all)"
    return (text.splitlines() or [type(err).__name__])[0]


def _is_text(head):
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:  # perhaps cut inside a character: judge by the bytes before it
        return all(b >= 0x20 or b in b"\t\r\n" for b in head[:-4])
    return True
