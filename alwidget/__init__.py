"""alwidget: label image sets on an interactive map in Jupyter, with active learning.

The public names are imported on first use so that ``import alwidget`` stays fast (torch
and the widget stack load only when needed).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The simulate module shares its name with its function. Import it now (numpy only) so that
# the package attribute is the function, whatever imports `alwidget.simulate` later.
from . import simulate as _simulate_module  # noqa: E402

simulate = _simulate_module.simulate

# public name -> module that defines it
_LAZY = {
    "Session": "session",
    "LabelStore": "store",
    "learning_curve_figure": "simulate",
    "LinearProbe": "probe",
    "Labeller": "widget",
}

__all__ = sorted([*_LAZY, "simulate"])


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'alwidget' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
