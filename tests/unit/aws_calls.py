"""Which AWS API calls a Lambda function's code can make, read from the source (no import).

From the function's handler, the scan follows what the code uses: a module's top-level code,
the functions it names (a lazy ``import`` inside a function counts only if that function is
used), every method of a class it names, and route functions registered by decorators. In
what is reached it collects boto3 operations: a method call on a client (``x.client.op(``,
``clients.client("sqs").op(``, ``management_client(e).op(``), or an operation named as a
string to the store's ``_call``/``getattr`` helper. Operation names come from botocore's
own service models, so a misspelt or unknown one is not counted.

Hand-written because no library maps Python call sites to IAM actions; the scan is tuned to
this code base's conventions (clients from :mod:`functions.aws.clients`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    # botocore service name -> the IAM action prefix (None: one action for every operation)
    "dynamodb": ("dynamodb", None),
    "sqs": ("sqs", None),
    "lambda": ("lambda", None),
    "s3": ("s3", None),
    # PostToConnection, GetConnection and DeleteConnection are all one IAM action.
    "apigatewaymanagementapi": ("execute-api", "ManageConnections"),
    "bedrock-runtime": ("bedrock", None),
    "ssm": ("ssm", None),
}
CLIENT_RECEIVERS = ("client", "_client")
"""Attribute names that hold a boto3 client in this code base (``self.client``...)."""
CLIENT_FACTORIES = ("client", "management_client")
"""Functions that return a boto3 client (``clients.client(...)``, ``management_client(...)``)."""
STRING_DISPATCH = ("_call",)
"""Store helpers called with the operation's name: ``self._call("query", ...)``."""


@cache
def operations() -> dict[str, set[str]]:
    """snake_case boto3 method name -> the IAM actions it needs."""
    session = botocore.session.get_session()
    found: dict[str, set[str]] = {}
    for service, (prefix, single) in SERVICES.items():
        for name in session.get_service_model(service).operation_names:
            found.setdefault(xform_name(name), set()).add(f"{prefix}:{single or name}")
    found["send_message_batch"] = {"sqs:SendMessage"}  # IAM has no SendMessageBatch action
    found["invoke"] = {"lambda:InvokeFunction"}  # the Invoke operation's IAM action
    # Converse and ConverseStream are authorized as the model invocations they make (Bedrock
    # user guide, "Carry out a conversation with the Converse API operations")
    found["converse"] = {"bedrock:InvokeModel"}
    found["converse_stream"] = {"bedrock:InvokeModelWithResponseStream"}
    return found


TRANSACTION = "dynamodb:TransactWriteItems"
TRANSACTION_ITEMS = {
    # IAM authorizes each item of a transaction as its own action (DynamoDB developer guide,
    # "Using IAM with DynamoDB transactions"); there is no TransactWriteItems action.
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@dataclass(eq=False)  # hashed by identity: one instance per module (cached)
class Module:
    name: str
    tree: ast.Module
    defs: dict[str, ast.AST] = field(default_factory=dict)
    """Top-level functions and classes by name."""

    @classmethod
    @cache
    def load(cls, name: str) -> Module | None:
        path = module_path(name)
        if path is None:
            return None
        tree = ast.parse(path.read_text(), str(path))
        defs = {
            n.name: n
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        return cls(name, tree, defs)

    def top_level(self) -> list[ast.AST]:
        """Module code that runs at import: everything but undecorated defs' bodies."""
        nodes: list[ast.AST] = []
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                nodes.extend(node.decorator_list)
                if node.decorator_list:  # registered (a route, a handler wrapper): it runs
                    nodes.append(node)
            else:
                nodes.append(node)
        return nodes


def _resolve(module: str, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")[: -level or None]
    return ".".join([*base, name] if name else base)


@dataclass
class Scan:
    """The reachable code of one function and the AWS operations in it."""

    units: set[tuple[str, str | None]] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)
    transaction_items: set[str] = field(default_factory=set)
    """The kinds of transaction item (``{"Put": ...}``) the reached code builds."""

    def reach(self, module: str, name: str | None = None) -> None:
        if not module.startswith("functions") or (module, name) in self.units:
            return
        loaded = Module.load(module)
        if loaded is None:
            return
        self.units.add((module, name))
        if name is None:
            self._walk(loaded, loaded.top_level())
            return
        self.reach(module)  # a name is usable once its module is imported
        if name in loaded.defs:
            self._walk(loaded, [loaded.defs[name]])

    def _walk(self, module: Module, nodes: list[ast.AST]) -> None:
        aliases = self._aliases(module)
        for node in (n for top in nodes for n in ast.walk(top)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                self._import(module.name, node)
            elif isinstance(node, ast.Name) and node.id in module.defs:
                self.reach(module.name, node.id)
            elif isinstance(node, ast.Name) and node.id in aliases:
                self.reach(*aliases[node.id])
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                target = aliases.get(node.value.id)
                if target is not None and target[1] is None:
                    self.reach(target[0], node.attr)
            if isinstance(node, ast.Call):
                self.calls.update(_operations(node))
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                self.transaction_items.update(keys & TRANSACTION_ITEMS.keys())

    def _import(self, module: str, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.reach(alias.name)
            return
        source = _resolve(module, node.level, node.module)
        for alias in node.names:
            if module_path(f"{source}.{alias.name}") is not None:
                self.reach(f"{source}.{alias.name}")
            else:
                self.reach(source, alias.name)

    @staticmethod
    @cache
    def _aliases(module: Module) -> dict[str, tuple[str, str | None]]:
        """Names bound by the module's imports (anywhere in it) -> (module, name or None)."""
        bound: dict[str, tuple[str, str | None]] = {}
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound[alias.asname or alias.name.split(".")[0]] = (alias.name, None)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module.name, node.level, node.module)
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    local = alias.asname or alias.name
                    found = module_path(submodule) is not None
                    bound[local] = (submodule, None) if found else (source, alias.name)
        return bound


def _operations(call: ast.Call) -> Iterator[str]:
    """The boto3 operations a call makes, as IAM actions."""
    ops = operations()
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in ops and _is_client(func.value):
        yield from ops[func.attr]
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if called in STRING_DISPATCH and call.args:
        first = call.args[0]
        if isinstance(first, ast.Constant) and first.value in ops:
            yield from ops[first.value]


def _is_client(node: ast.expr) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in CLIENT_RECEIVERS
    if isinstance(node, ast.Name):
        return node.id in CLIENT_RECEIVERS
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name in CLIENT_FACTORIES
    return False


def actions_of(handler: str) -> set[str]:
    """The IAM actions the function whose handler is ``handler`` (``pkg.module.name``) needs."""
    module, _, name = handler.rpartition(".")
    scan = Scan()
    scan.reach(module, name)
    calls = set(scan.calls)
    if TRANSACTION in calls:
        calls.discard(TRANSACTION)
        calls.update(TRANSACTION_ITEMS[kind] for kind in scan.transaction_items)
    return calls


def actions_of_toolkits(modules: list[str]) -> set[str]:
    """The IAM actions the toolkit modules a function loads by configuration need (their
    ``make_toolkit`` and their top level): the worker runs their tools."""
    scan = Scan()
    for module in modules:
        scan.reach(module)
        scan.reach(module, "make_toolkit")
    return set(scan.calls)
