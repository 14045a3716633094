"""Rewrite an ``.ort`` file so that every conversion of one model gives the same bytes.

Why the converter's bytes vary (measured with onnxruntime 1.23.0: two conversions of one model, same
size, 200-1100 bytes apart, all of them below the ``Model`` table): ``InferenceSession::SaveToOrtFormat``
writes the model first and the kernel-type-string table last (``KernelTypeStrResolver::SaveToOrtFormat``,
onnxruntime/core/framework/kernel_type_str_resolver.cc). That function walks an ``InlinedHashMap``
(absl ``flat_hash_map``, whose order is seeded per process) and serializes each entry as it goes; the
vectors it hands over are sorted (``CreateVectorOfSortedTables``), but the tables and strings they point
to sit in the buffer in hash order. FlatBuffers are built back to front, so that table is the front of
the file and the model (graph, weights, runtime optimization records) is the rest, identical every time.

:func:`canonical_ort` keeps that rest byte for byte (FlatBuffers offsets are relative, and the rest keeps
its distance to the end of the buffer, which is what alignment is measured from) and writes the front
again with ``flatbuffers.Builder`` in sorted order: the same entries, so a loader (which reads them into
a hash map) sees the same table. It checks the layout it relies on and says what it found otherwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import flatbuffers
from flatbuffers import encode
from flatbuffers import number_types as N
from flatbuffers.table import Table

IDENTIFIER = b"ORTM"
"""``file_identifier`` of ort.fbs."""
_ORT_VERSION, _MODEL, _SESSION_STATE, _RESOLVER = 4, 6, 8, 10
"""vtable offsets of the ``InferenceSession`` fields (ort.fbs order; ``session_state`` is deprecated)."""

Args = tuple[tuple[int, int], ...]
"""``(ArgType, index)`` of each formal parameter a kernel type string binds, in the schema's order."""
ResolverTable = tuple[tuple[bytes, tuple[tuple[bytes, Args], ...]], ...]
"""``(op id, ((kernel type string, args), ...))``, sorted by op id and type string."""


@dataclass(frozen=True)
class Canonical:
    """What :func:`canonical_ort` made of a file."""

    data: bytes
    """The rewritten file; the input unchanged when ``problem`` is set."""
    problem: str | None
    """Why the file was left as the converter wrote it (a layout this module does not know)."""


def read_resolver(data: bytes) -> ResolverTable:
    """The kernel-type-string table of an .ort file, sorted (its order in the file carries no meaning)."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

    resolver = InferenceSession.GetRootAs(data, 0).KernelTypeStrResolver()
    if resolver is None:
        return ()
    entries = []
    for i in range(resolver.OpKernelTypeStrArgsLength()):
        op = resolver.OpKernelTypeStrArgs(i)
        kinds = []
        for j in range(op.KernelTypeStrArgsLength()):
            kind = op.KernelTypeStrArgs(j)
            args = tuple((kind.Args(a).ArgType(), kind.Args(a).Index()) for a in range(kind.ArgsLength()))
            kinds.append((kind.KernelTypeStr(), args))
        entries.append((op.OpId(), tuple(sorted(kinds))))
    return tuple(sorted(entries))


def canonical_ort(data: bytes) -> Canonical:
    """``data`` (an .ort file) with its kernel-type-string table written in sorted order.

    Leaves ``data`` as it is, with the reason, when the file is not laid out as the module docstring
    says (another converter version): the caller then records the file as not reproducible.
    """
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        return Canonical(data, "not an ORT format file (no ORTM identifier)")
    try:
        session = Table(data, encode.Get(N.UOffsetTFlags.packer_type, data, 0))
        problem = _layout_problem(session)
        if problem is not None:
            return Canonical(data, problem)
        model = session.Indirect(session.Pos + session.Offset(_MODEL))
        version = session.Indirect(session.Pos + session.Offset(_ORT_VERSION))
        start = min(model, _vtable(data, model))  # the model's table, or its vtable written just before it
        if any(pos >= start for pos in _resolver_objects(session)):
            return Canonical(data, "its kernel-type-string table is not in front of the model")
        table = read_resolver(data)
    except (struct.error, IndexError) as exc:  # offsets pointing outside the file
        return Canonical(data, f"it does not parse as ort.fbs says ({exc})")
    rest = data[start:]
    version_at = version - start if version >= start else _version(session)
    # The file's length is a multiple of the largest alignment its contents rely on (FlatBuffers pad the
    # front for that); the rewritten file's must be too.
    align = min(16, len(data) & -len(data))
    out = _rewrite(rest, model - start, version_at, table, align)
    if read_resolver(out) != table or not out.endswith(rest):
        return Canonical(data, "the rewritten file does not read back the same")
    return Canonical(out, None)


def _rewrite(rest: bytes, model: int, version: int | bytes, table: ResolverTable, align: int) -> bytes:
    """A new file: ``rest`` (the model and what it holds) at the end, as in the converter's file, then
    ``table`` and the ``InferenceSession`` before it. ``model`` and ``version`` (or the version string
    itself, when it is not in ``rest``) are positions in ``rest``; the file's length is a multiple of
    ``align``."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import InferenceSession

    builder = flatbuffers.Builder(len(rest) + 1024)
    # FlatBuffers align from the end of the buffer and refer by relative offsets: ``rest`` copied to the
    # end reads as it did. A builder names a position by its distance to the end.
    builder.Prep(1, len(rest))
    builder.head -= len(rest)
    builder.Bytes[builder.head :] = rest
    builder.minalign = align
    resolver = _write_resolver(builder, table)
    version_ref = len(rest) - version if isinstance(version, int) else builder.CreateString(version)
    InferenceSession.Start(builder)
    InferenceSession.AddOrtVersion(builder, version_ref)
    InferenceSession.AddModel(builder, len(rest) - model)
    InferenceSession.AddKernelTypeStrResolver(builder, resolver)
    builder.Finish(InferenceSession.End(builder), IDENTIFIER)
    return bytes(builder.Output())


def _layout_problem(session: Table) -> str | None:
    """Why ``session`` (the root ``InferenceSession``) is not the layout :func:`canonical_ort` rewrites."""
    vtable = _vtable(session.Bytes, session.Pos)
    fields = (encode.Get(N.VOffsetTFlags.packer_type, session.Bytes, vtable) - 4) // 2
    if fields > 4 or session.Offset(_SESSION_STATE):
        return f"its InferenceSession has fields this packager does not know ({fields} in its vtable)"
    if not session.Offset(_MODEL) or not session.Offset(_RESOLVER) or not session.Offset(_ORT_VERSION):
        return "its InferenceSession lacks the model, the version or the kernel-type-string table"
    return None


def _vtable(buf: bytes, table: int) -> int:
    return table - encode.Get(N.SOffsetTFlags.packer_type, buf, table)


def _version(session: Table) -> bytes:
    return session.String(session.Pos + session.Offset(_ORT_VERSION))


def _resolver_objects(session: Table) -> list[int]:
    """Where the tables and vectors of the kernel-type-string table start (its strings and vtables may be
    shared with the model's, which are written first and so are the same every time)."""
    buf = session.Bytes
    resolver = Table(buf, session.Indirect(session.Pos + session.Offset(_RESOLVER)))
    found = [resolver.Pos]

    def children(table: Table, field: int) -> list[Table]:
        offset = table.Offset(field)
        if not offset:
            return []
        vector = table.Vector(offset)
        found.append(vector - N.UOffsetTFlags.bytewidth)
        items = encode.Get(N.UOffsetTFlags.packer_type, buf, vector - N.UOffsetTFlags.bytewidth)
        tables = [Table(buf, table.Indirect(vector + 4 * i)) for i in range(items)]
        found.extend(t.Pos for t in tables)
        return tables

    for op in children(resolver, 4):
        for kind in children(op, 6):
            children(kind, 6)
    return found


def _write_resolver(builder: flatbuffers.Builder, table: ResolverTable) -> int:
    """``KernelTypeStrResolver`` of ort.fbs with onnxruntime's generated builders, children first as
    FlatBuffers require; type strings are shared as onnxruntime shares them (``CreateSharedString``)."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import (
        ArgTypeAndIndex,
        KernelTypeStrArgsEntry,
        KernelTypeStrResolver,
        OpIdKernelTypeStrArgsEntry,
    )

    def vector(offsets: list[int]) -> int:
        builder.StartVector(N.UOffsetTFlags.bytewidth, len(offsets), N.UOffsetTFlags.bytewidth)
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    ops = []
    for op_id, kinds in table:
        entries = []
        for kind, args in kinds:
            arg_tables = []
            for arg_type, index in args:
                ArgTypeAndIndex.Start(builder)
                ArgTypeAndIndex.AddArgType(builder, arg_type)
                ArgTypeAndIndex.AddIndex(builder, index)
                arg_tables.append(ArgTypeAndIndex.End(builder))
            arg_vector = vector(arg_tables)
            name = builder.CreateSharedString(kind)
            KernelTypeStrArgsEntry.Start(builder)
            KernelTypeStrArgsEntry.AddKernelTypeStr(builder, name)
            KernelTypeStrArgsEntry.AddArgs(builder, arg_vector)
            entries.append(KernelTypeStrArgsEntry.End(builder))
        entry_vector = vector(entries)
        op_name = builder.CreateString(op_id)
        OpIdKernelTypeStrArgsEntry.Start(builder)
        OpIdKernelTypeStrArgsEntry.AddOpId(builder, op_name)
        OpIdKernelTypeStrArgsEntry.AddKernelTypeStrArgs(builder, entry_vector)
        ops.append(OpIdKernelTypeStrArgsEntry.End(builder))
    op_vector = vector(ops)
    KernelTypeStrResolver.Start(builder)
    KernelTypeStrResolver.AddOpKernelTypeStrArgs(builder, op_vector)
    return KernelTypeStrResolver.End(builder)
