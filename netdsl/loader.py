"""Load .net files: resolve imports (files and the standard library) and build a network's IR."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import networkx as nx

from compiler.backend.names import check_module_names
from compiler.diagnostics import NetError, Span, did_you_mean, register_source
from compiler.validate import validate
from netdsl import syntax as ast
from netdsl.builder import Builder
from netdsl.origins import call_notes
from netdsl.parser import parse_text

STDLIB_PACKAGE = "netdsl.stdlib"


# What a file's first bytes say it is, when it is not .net text, and what to do with it.
BINARY_FORMATS = {
    "onnx": ("an ONNX model", "import it: netdsl import {path} -o model.net"),
    "zip": ("a zip archive (a PyTorch checkpoint or TorchScript file)",
            "import the model it belongs to: netdsl import model.py:Net --state-dict {path} --input CxHxW -o model.net"),
    "pickle": ("a Python pickle (a PyTorch checkpoint)",
               "import the model it belongs to: netdsl import model.py:Net --state-dict {path} --input CxHxW -o model.net"),
    "safetensors": ("a safetensors weights file", "pass it as weights: --weights {path}"),
}


def sniff_binary(head: bytes) -> str | None:
    """The kind of binary file (a key of BINARY_FORMATS) its first bytes show, or None for text."""
    if head[:2] == b"PK":
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30:
        return "safetensors"
    if head[:1] == b"\x08" and b"\x12" in head[:16]:  # protobuf: ir_version (field 1), then producer_name (field 2)
        return "onnx"
    return None


def refuse_binary(path: str, head: bytes) -> None:
    """A NetError naming what a binary file is and the command that reads it, instead of decoding it as .net text."""
    kind = sniff_binary(head)
    if kind is not None:
        what, todo = BINARY_FORMATS[kind]
        raise NetError(f"{path} is {what}, not a .net file", notes=[todo.format(path=path)])


@cache
def _stdlib_text(name: str) -> str:
    return resources.files(STDLIB_PACKAGE).joinpath(name + ".net").read_text(encoding="utf-8")


@cache
def _stdlib_parsed(name: str) -> ast.Module:
    """A standard-library module parsed once per process (its syntax tree is never changed by loading)."""
    return parse_text(_stdlib_text(name), f"<{name}>")


MAX_SOURCE_BYTES = 4 * 2**20  # a .net file is a few kB of text (the largest example is 5 kB)
UTF8_BOM = b"\xef\xbb\xbf"


def read_source(path: str | Path) -> str:
    """The text of a .net file: at most MAX_SOURCE_BYTES read (so /dev/zero or a huge file is refused, not
    swallowed); a binary model or weights file named for what it is (refuse_binary); then decoded by
    decode_source."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except IsADirectoryError:
        raise NetError(f"cannot read {path}: it is a directory, not a .net file") from None
    except OSError as err:
        raise NetError(f"cannot read {path}: {err.strerror or err}") from None
    refuse_binary(str(path), data[:64])
    if len(data) > MAX_SOURCE_BYTES:
        raise NetError(f"{path} is larger than {MAX_SOURCE_BYTES // 2**20} MB; a .net file is text of a few kB",
                       notes=["is this the right file?"])
    return decode_source(data, str(path))


def decode_source(data: bytes, file: str) -> str:
    """Bytes -> source text, the one way every .net text is decoded: UTF-8, an optional byte-order mark
    dropped; binary data or a byte that is not UTF-8 is a NetError at its line and column."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise NetError(f"{file} is UTF-16 text; save it as UTF-8", Span(file, 1, 1, 1, 2))
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _byte_error(data, err.start, file, f"byte 0x{data[err.start]:02x} is not UTF-8 text") from None
    if nul >= 0:
        raise _byte_error(data, nul, file, "a NUL byte: this is binary data, not .net text")
    return text


def _byte_error(data: bytes, pos: int, file: str, what: str) -> NetError:
    """A NetError located at byte `pos`, quoting its line (undecodable bytes shown as U+FFFD)."""
    start = data.rfind(b"\n", 0, pos) + 1
    line = data.count(b"\n", 0, pos) + 1
    column = len(data[start:pos].decode("utf-8", "replace")) + 1
    register_source(file, data.decode("utf-8", "replace"))
    return NetError(f"{what}; a .net file is UTF-8 text", Span(file, line, column, line, column + 1))


def stdlib_modules() -> list[str]:
    """Names importable with `from NAME import ...` (the .net files shipped in netdsl/stdlib)."""
    return sorted(p.name[:-4] for p in resources.files(STDLIB_PACKAGE).iterdir() if p.name.endswith(".net"))


class Loader:
    """Parses files once and computes, per file, the blocks its definitions can call."""

    def __init__(self):
        self.modules: dict[str, ast.Module] = {}
        self.visible: dict[str, dict[str, ast.BlockDef]] = {}
        self.loading: list[str] = []

    def load_text(self, text: str, file: str, parsed: ast.Module | None = None) -> ast.Module:
        module = parsed if parsed is not None else parse_text(text, file)
        self.modules[file] = module
        self.loading.append(file)
        try:
            visible = dict(module.blocks)
            for imp in module.imports:
                for name, block in self.imported(imp, file).items():
                    if name in visible and visible[name] is not block:
                        raise NetError(f"block '{name}' is both defined here and imported", imp.span)
                    visible[name] = block
        finally:
            self.loading.pop()
        self.visible[file] = visible
        return module

    def load_file(self, path: str) -> ast.Module:
        key = str(path)
        if key in self.modules:
            return self.modules[key]
        return self.load_text(read_source(path), key)

    def imported(self, imp: ast.Import, importer: str) -> dict[str, ast.BlockDef]:
        if imp.is_file:
            path = Path(importer).parent / imp.module if not Path(imp.module).is_absolute() else Path(imp.module)
            if not path.is_file():
                raise NetError(f"cannot import '{imp.module}': no such file ({path})", imp.span)
            key = str(path)
        else:
            if imp.module not in stdlib_modules():
                raise NetError(f"no library module '{imp.module}'", imp.span,
                               [f"known modules: {', '.join(stdlib_modules())}"] + did_you_mean(imp.module, stdlib_modules()))
            key = f"<{imp.module}>"
        if key in self.loading:
            raise NetError(f"import cycle: {' -> '.join([*self.loading, key])}", imp.span)
        if key not in self.modules:
            if imp.is_file:
                self.load_file(key)
            else:
                register_source(key, _stdlib_text(imp.module))  # errors inside it quote its lines
                self.load_text(_stdlib_text(imp.module), key, _stdlib_parsed(imp.module))
        blocks = self.modules[key].blocks
        if imp.names is None:
            return dict(blocks)
        out = {}
        for name in imp.names:
            if name not in blocks:
                raise NetError(f"'{imp.module}' has no block '{name}'", imp.span, did_you_mean(name, blocks))
            out[name] = blocks[name]
        return out

    def build(self, file: str, network: str | None = None, params: dict | None = None) -> nx.DiGraph:
        """Build (and validate) one network of a loaded file: the named one, or the file's only/last one."""
        module = self.modules[file]
        if not module.networks:
            first = next(iter(module.blocks.values()), None)
            where = first.span if first is not None else Span(file, 1, 1, 1, 2)
            what = " (only blocks)" if first is not None else ""
            raise NetError(f"this file defines no network{what}", Span(file, where.line, where.column, where.line,
                                                                       where.column + 1),
                           ["a network is `network NAME { input x: [C, H, W] ... output y = ... }`"])
        if network is None:
            net = list(module.networks.values())[-1]
        elif network in module.networks:
            net = module.networks[network]
        else:
            raise NetError(f"{file} has no network '{network}'", None,
                           [f"networks: {', '.join(module.networks)}"] + did_you_mean(network, module.networks))
        try:
            g = Builder(self.visible, {f: m.lets for f, m in self.modules.items()}).build(net, file, params)
        except RecursionError:
            raise NetError(f"network '{net.name}' nests expressions or blocks too deeply", net.span) from None
        g.graph["source"] = file
        try:
            validate(g)
            check_module_names(g)  # what export needs of names, refused here already: check and export agree
        except NetError as err:
            # an error about a layer inside blocks: the calls that made it, as errors while building have them
            node = next((n for n, d in g.nodes(data=True) if err.span is not None and d.get("span") == err.span), None)
            if node is not None and not any(n.startswith("in block ") for n in err.notes):
                err.notes += call_notes(g, node)
            raise
        return g


def load_network(path: str, network: str | None = None, params: dict | None = None) -> nx.DiGraph:
    """Parse a .net file (and its imports) and return the validated, shape-inferred IR of one network."""
    loader = Loader()
    loader.load_file(path)
    return loader.build(str(path), network, params)


def load_network_text(text: str, file: str = "<text>", network: str | None = None,
                      params: dict | None = None) -> nx.DiGraph:
    """The same as load_network, from source text (imports resolve relative to `file`)."""
    loader = Loader()
    loader.load_text(text, file)
    return loader.build(file, network, params)
