"""A griffe extension for the API pages: the docstrings cross-reference in Sphinx's roles
(``:class:`~zoo.data.scenes.FashionMNISTScenes```, ``:func:`zoo.load```), which Markdown would print as written;
each becomes the inline code it names (``~`` keeps the last part of the path, as Sphinx shows it)."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|obj|data|exc):`(~?)([^`]+)`")


def _code(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
