"""Read and write a .tflite flatbuffer as LiteRT's generated object API (``ModelT``), for the
stages that edit a converted or quantized model in place (uint8 interface, pixel input,
HARD_SWISH rewrite, metadata)."""
from __future__ import annotations

import flatbuffers
import numpy as np

HEADROOM = 65536  # bytes the builder starts with beyond the input's size


def schema():
    from ai_edge_litert import schema_py_generated
    return schema_py_generated


def unpack(data: bytes):
    """The model as mutable objects, every buffer's contents held inline (ai-edge-quantizer
    writes offset-addressed buffers after the flatbuffer, which a re-pack would drop)."""
    model = schema().ModelT.InitFromPackedBuf(data, 0)
    for buffer in model.buffers:
        if buffer.offset and buffer.size:
            buffer.data = np.frombuffer(data, np.uint8, buffer.size, buffer.offset).copy()
        buffer.offset, buffer.size = 0, 0
    return model


def pack(model, size_hint: int) -> bytes:
    builder = flatbuffers.Builder(size_hint + HEADROOM)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def opcode(model, builtin: int, version: int = 1) -> int:
    """The model's own code for this op, raised to at least ``version``; else a new one."""
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, version)
            return index
    code = schema().OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode = builtin, min(builtin, 127)
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def add_buffer(model, values: np.ndarray | None = None) -> int:
    buffer = schema().BufferT()
    if values is not None:
        buffer.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8)
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def rename_signature_tensors(model, renamed: dict[int, int]) -> None:
    """Point every signature's inputs and outputs at the tensors that replaced them."""
    for signature in model.signatureDefs or []:
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_map.tensorIndex = renamed.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
