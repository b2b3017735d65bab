"""Sphinx configuration of wdlab's documentation site.

Build it (the command ``.ci/run`` runs, warnings as errors, every cross-reference checked)::

    sphinx-build -W --keep-going -n -b html docs docs/_build/html

Why Sphinx with MyST-Parser (and not MkDocs with mkdocstrings): the pages stay Markdown, as they were, and the
docstrings already use reST cross-reference roles (``:func:``, ``:class:``, ``:mod:``, ``:data:``; 235 of them),
which Sphinx's autodoc renders as they are; mkdocstrings would need every one of them rewritten. ``-n``
(nitpicky) makes every cross-reference that does not resolve a warning, ``-W`` makes warnings errors, and
MyST reports a relative link to a Markdown file or heading that does not exist (``myst.xref_missing``) as a
warning too. Nothing is downloaded at build time (CI has no internet): no intersphinx; names of third-party
packages (torch, lightning, ...) have no inventory here and are ignored by :data:`nitpick_ignore_regex`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

project = "wdlab"
author = "the wdlab authors"
copyright = "2026, the wdlab authors"
release = importlib.metadata.version("wdlab")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
# The data and outputs under docs/replication/ are not pages; docs/_build is the output.
exclude_patterns = ["_build", "replication/fashion_mnist/**"]

# -- MyST: Markdown pages ---------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links are checked like any other
suppress_warnings: list[str] = []

# -- autodoc: the API reference --------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "fully-qualified"  # torch.optim.Optimizer, not Optimizer: matched below
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_inherit_docstrings = False  # not Lightning's "Same as nn.Module.forward" under ImageClassifier.forward
# The docstrings' "Args:" / "Returns:" sections are Google style: napoleon's parser turns them into field lists,
# for functions and classes only (on a data attribute it would read "The basin: ..." as a type), see setup().

# -- nitpicky: every cross-reference must resolve ---------------------------------------------------------
nitpicky = True
# Third-party names: no intersphinx inventory can be fetched at build time, so references into these packages
# (from docstrings and from type hints) cannot resolve here. Only these package prefixes are ignored: a
# reference to a wdlab name that does not resolve still fails the build.
_THIRD_PARTY = r"(torch|lightning|pytorch_lightning|lightning_fabric|torchmetrics|torchvision|numpy|np|scipy|" \
               r"optuna|sqlalchemy|matplotlib|jsonargparse|yaml|tensorboard|timm|collections\.abc|typing|" \
               r"pathlib|os|io|contextlib|argparse|subprocess|threading|dataclasses|enum|re|types|random)"
nitpick_ignore_regex = [
    ("py:.*", _THIRD_PARTY + r"(\..*)?"),
]
nitpick_ignore: list[tuple[str, str]] = [
    ("py:class", "ParamsT"),  # torch.optim.optimizer.ParamsT, a type alias Sphinx prints by its short name
    # wdlab.training.Preempted's docstring names its instance attribute (set in __init__, so no autodoc entry);
    # wdlab/training is not edited by the docs change: the reference is ignored here instead.
    ("py:attr", "signum"),
]

# -- HTML ----------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"wdlab {release}"


# -- references to wdlab's internal names ------------------------------------------------------------------
# The API reference documents the public names (each module's __all__). Docstrings also name internal
# helpers (:func:`check_spec`, :mod:`wdlab.optim.decoupling`) and public names by their defining module
# (:func:`wdlab.optim.decay.timescale_weight_decay`). Such a reference is looked up in the package: one that
# names a documented object under another name links to its entry; one that names an existing internal
# object is shown as code without a link (it has no page); one that names nothing -- a typo, a renamed or
# deleted function -- stays a warning and fails the build.


def _lookup(path: str):
    """The object at the dotted ``path`` (module prefix imported), or ``_MISSING``."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # not a module (or it fails to import): try a shorter prefix
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return _MISSING
        return obj
    return _MISSING


_MISSING = object()


def _candidates(node) -> list[str]:
    target = node["reftarget"].lstrip("~.")
    modname, classname = node.get("py:module"), node.get("py:class")
    contexts = []
    source = str(node.source or "")
    if "docstring of " in source:  # the object whose docstring holds the reference, by its defining module
        owner = source.rsplit("docstring of ", 1)[1].split(":")[0]
        parts = owner.split(".")
        contexts += [".".join(parts[:cut]) for cut in range(len(parts), 1, -1)]
    if modname and classname:
        contexts.append(f"{modname}.{classname}")
        cls = _lookup(f"{modname}.{classname}")
        if cls is not _MISSING and getattr(cls, "__module__", None):
            contexts.append(f"{cls.__module__}.{classname}")
            contexts.append(cls.__module__)
    if modname:
        contexts.append(modname)
    return [f"{context}.{target}" for context in contexts] + [target]


def _internal_reference(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    for path in _candidates(node):
        if not path.startswith("wdlab"):
            continue
        obj = _lookup(path)
        if obj is _MISSING:
            continue
        public = _public_names(app).get(id(obj))
        if public is not None:
            domain = env.get_domain("py")
            resolved = domain.resolve_any_xref(env, node["refdoc"], app.builder, public, node, contnode)
            if resolved:
                return resolved[0][1]
        return contnode  # an existing internal name: code, no link
    short = node["reftarget"].lstrip("~.")
    if "." not in short:  # a short name from a signature (no context): any wdlab module that defines it
        import sys

        if any(getattr(module, short, _MISSING) is not _MISSING
               for name, module in list(sys.modules.items()) if name.startswith("wdlab") and module):
            return contnode
    return None


def _public_names(app) -> dict[int, str]:
    """id(object) -> its documented name, for every object the Python domain documents."""
    cache = getattr(app, "_wdlab_public", None)
    if cache is None:
        cache = {}
        for name, entry in app.env.get_domain("py").objects.items():
            if entry.objtype in ("module",) or entry.aliased:
                continue
            obj = _lookup(name)
            if obj is not _MISSING and not isinstance(obj, (int, float, str, bool, type(None))):
                cache.setdefault(id(obj), name)
        app._wdlab_public = cache
    return cache


def _google_sections(app, what, name, obj, options, lines):
    if what in ("attribute", "data", "property", "module"):
        return
    from sphinx.ext.napoleon import Config, GoogleDocstring

    lines[:] = GoogleDocstring(lines, Config(napoleon_use_param=True, napoleon_use_rtype=True), app, what, name,
                               obj, options).lines()


def _public_names_rst(module_name: str) -> list[str]:
    """reST documenting ``module_name``: its docstring, then every name of its ``__all__`` in order, each with
    the autodoc directive for its kind (``automodule`` :members: would leave out constants imported from another
    module and names the module loads lazily)."""
    module = importlib.import_module(module_name)
    lines = [f".. automodule:: {module_name}", "   :no-members:", ""]
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            directive, options = "automodule", ["   :no-members:"]
        elif inspect.isclass(obj):
            directive, options = "autoclass", []
        elif callable(obj):
            directive, options = "autofunction", []
        else:
            directive, options = "autodata", []
        lines += [f".. {directive}:: {module_name}.{name}", *options, ""]
    return lines


def _parse(directive: Directive, lines: list[str], source: str):
    node = nodes.section()
    node.document = directive.state.document
    nested_parse_with_titles(directive.state, StringList(lines, source=source), node)
    return node.children


class PublicNames(Directive):
    """``.. wdlab-public-names:: MODULE``: the module's docstring and every name of its ``__all__``."""

    required_arguments = 1

    def run(self):
        return _parse(self, _public_names_rst(self.arguments[0]), "wdlab-public-names")


class PublicModules(Directive):
    """``.. wdlab-public-modules:: PACKAGE``: a section per module of PACKAGE that has an ``__all__``, with its
    public names: a new public module is documented without editing a page."""

    required_arguments = 1

    def run(self):
        package = importlib.import_module(self.arguments[0])
        lines = []
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
            name = f"{package.__name__}.{info.name}"
            if info.name.startswith("_") or not hasattr(importlib.import_module(name), "__all__"):
                continue
            lines += [name, "-" * len(name), "", *_public_names_rst(name)]
        return _parse(self, lines, "wdlab-public-modules")


def setup(app):
    app.add_directive("wdlab-public-names", PublicNames)
    app.add_directive("wdlab-public-modules", PublicModules)
    app.connect("autodoc-process-docstring", _google_sections)
    app.connect("missing-reference", _internal_reference)
    app.connect("env-updated", lambda app, env: setattr(app, "_wdlab_public", None))
