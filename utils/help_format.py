"""``--help`` that states each option's default once.

argparse's ArgumentDefaultsHelpFormatter appends ``(default: X)`` to every option, also ``(default: None)``
after a help text that already says what happens by default ("default: the checkpoint's K"). This one
appends it only where it tells something: a value other than None (or False for a flag, or an empty list for
a repeatable option) that the help text does not already state.
"""
import argparse
import re

STATED = re.compile(r"\bdefault\b", re.IGNORECASE)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or STATED.search(text):
            return text
        return super()._get_help_string(action)
