"""Memory sizes: what the machine has available now, and sizes written as users write them ("8G", "500M")."""
import os

from utils.errors import UserError

UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def available_bytes():
    """Memory the kernel can give this process now without swapping (MemAvailable; free pages elsewhere)."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def resident_bytes():
    """Memory this process holds now (resident set size; 0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def parse_size(text, name="--max_memory"):
    """'8G', '8GB', '500M', '1.5G' or a number of bytes -> bytes; a UserError naming ``name`` otherwise."""
    value = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in UNITS and not value[-1:].isdigit() else ""
    try:
        number = float(value[:len(value) - len(unit)])
    except ValueError:
        number = -1.0
    if not number > 0:
        raise UserError(f"{name} must be a size such as 8G, 500M or a number of bytes; got {text!r}")
    return int(number * UNITS[unit])


def gigabytes(size):
    return f"{size / 2**30:.1f} GB"
