"""Checks that beamline's .proto files are wire-compatible with Triton's.

Compiles proto/*.proto with protoc into a descriptor set and compares it, message by message and
field by field, with the descriptors shipped in NVIDIA's tritonclient package. Every difference is
collected and reported together, so one run shows all that is wrong.

Needs: protoc ($PROTOC, else /usr/bin/protoc, else the one on PATH), and tritonclient[grpc] importable (the test is skipped
otherwise). Run: python -m pytest tests/integration/test_proto_compat.py
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
triton_service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
triton_model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"
FDP = descriptor_pb2.FieldDescriptorProto
TYPE_NAMES = {number: name for name, number in FDP.Type.items()}
LABEL_NAMES = {number: name for name, number in FDP.Label.items()}


def _protoc():
    # Prefer the system protoc (the one CMake builds with) over any copy a virtualenv provides.
    system_protoc = "/usr/bin/protoc" if os.access("/usr/bin/protoc", os.X_OK) else None
    protoc = os.environ.get("PROTOC") or system_protoc or shutil.which("protoc")
    if not protoc:
        pytest.skip("protoc not found")
    return protoc


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """Our files, compiled by protoc, keyed by file name."""
    out = tmp_path_factory.mktemp("descriptors") / "beamline.pb"
    subprocess.run(
        [_protoc(), f"-I{PROTO_DIR}", "--include_imports", f"--descriptor_set_out={out}",
         "grpc_service.proto", "model_config.proto", "health.proto"],
        check=True, capture_output=True, text=True)
    file_set = descriptor_pb2.FileDescriptorSet()
    file_set.ParseFromString(out.read_bytes())
    return {f.name: f for f in file_set.file}


def _theirs(module):
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    return proto


def _type_name_suffix(type_name):
    # Fully qualified names may or may not carry the leading dot; compare without it.
    return type_name.lstrip(".")


def _field_facts(message, field):
    oneof = message.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else None
    return {
        "number": field.number,
        "type": TYPE_NAMES[field.type],
        "label": LABEL_NAMES[field.label],
        "type_name": _type_name_suffix(field.type_name),
        "oneof": oneof,
        "proto3_optional": field.proto3_optional,
    }


def _compare_enum(path, theirs, ours, diffs):
    their_values = {v.name: v.number for v in theirs.value}
    our_values = {v.name: v.number for v in ours.value}
    for name in sorted(their_values.keys() | our_values.keys()):
        if name not in our_values:
            diffs.append(f"{path}: enum value {name} missing")
        elif name not in their_values:
            diffs.append(f"{path}: extra enum value {name}")
        elif their_values[name] != our_values[name]:
            diffs.append(f"{path}.{name}: number {our_values[name]}, Triton has {their_values[name]}")


def _compare_named(path, kind, theirs, ours, compare, diffs):
    """Pairs up children by name, reports missing/extra ones and compares the pairs."""
    their_by_name = {x.name: x for x in theirs}
    our_by_name = {x.name: x for x in ours}
    for name in sorted(their_by_name.keys() | our_by_name.keys()):
        child = f"{path}.{name}" if path else name
        if name not in our_by_name:
            diffs.append(f"{child}: {kind} missing")
        elif name not in their_by_name:
            diffs.append(f"{child}: extra {kind}")
        else:
            compare(child, their_by_name[name], our_by_name[name], diffs)


def _compare_message(path, theirs, ours, diffs):
    if theirs.options.map_entry != ours.options.map_entry:
        diffs.append(f"{path}: map_entry is {ours.options.map_entry}, "
                     f"Triton has {theirs.options.map_entry}")
    their_oneofs = sorted(o.name for o in theirs.oneof_decl)
    our_oneofs = sorted(o.name for o in ours.oneof_decl)
    if their_oneofs != our_oneofs:
        diffs.append(f"{path}: oneofs {our_oneofs}, Triton has {their_oneofs}")

    def compare_field(field_path, their_field, our_field, field_diffs):
        their_facts = _field_facts(theirs, their_field)
        our_facts = _field_facts(ours, our_field)
        for key, their_value in their_facts.items():
            if our_facts[key] != their_value:
                field_diffs.append(
                    f"{field_path}: {key} is {our_facts[key]!r}, Triton has {their_value!r}")

    _compare_named(path, "field", theirs.field, ours.field, compare_field, diffs)
    _compare_named(path, "enum", theirs.enum_type, ours.enum_type, _compare_enum, diffs)
    _compare_named(path, "message", theirs.nested_type, ours.nested_type, _compare_message, diffs)


def _compare_service(path, theirs, ours, diffs):
    def compare_method(method_path, their_method, our_method, method_diffs):
        for key in ("input_type", "output_type"):
            a = _type_name_suffix(getattr(our_method, key))
            b = _type_name_suffix(getattr(their_method, key))
            if a != b:
                method_diffs.append(f"{method_path}: {key} is {a}, Triton has {b}")
        for key in ("client_streaming", "server_streaming"):
            if getattr(our_method, key) != getattr(their_method, key):
                method_diffs.append(f"{method_path}: {key} is {getattr(our_method, key)}, "
                                    f"Triton has {getattr(their_method, key)}")

    _compare_named(path, "rpc", theirs.method, ours.method, compare_method, diffs)


def compare_files(theirs, ours):
    """All differences between two FileDescriptorProtos, as readable lines."""
    diffs = []
    name = theirs.name
    if ours.package != theirs.package:
        diffs.append(f"{name}: package {ours.package!r}, Triton has {theirs.package!r}")
    if ours.syntax != theirs.syntax:
        diffs.append(f"{name}: syntax {ours.syntax!r}, Triton has {theirs.syntax!r}")
    if list(ours.dependency) != list(theirs.dependency):
        diffs.append(f"{name}: imports {list(ours.dependency)}, Triton has {list(theirs.dependency)}")
    prefix = theirs.package
    _compare_named(prefix, "enum", theirs.enum_type, ours.enum_type, _compare_enum, diffs)
    _compare_named(prefix, "message", theirs.message_type, ours.message_type, _compare_message,
                   diffs)
    _compare_named(prefix, "service", theirs.service, ours.service, _compare_service, diffs)
    return diffs


@pytest.mark.parametrize("file_name,module", [
    ("model_config.proto", triton_model_config_pb2),
    ("grpc_service.proto", triton_service_pb2),
])
def test_matches_triton(ours, file_name, module):
    assert file_name in ours, f"protoc produced no {file_name}"
    diffs = compare_files(_theirs(module), ours[file_name])
    assert not diffs, f"{len(diffs)} difference(s) from Triton's {file_name}:\n" + "\n".join(diffs)


def test_service_has_all_twenty_rpcs(ours):
    (service,) = ours["grpc_service.proto"].service
    assert service.name == "GRPCInferenceService"
    assert len(service.method) == 20
    streaming = [m.name for m in service.method if m.client_streaming or m.server_streaming]
    assert streaming == ["ModelStreamInfer"]


def test_comparison_reports_differences(ours):
    """The comparison itself must notice a change: renumber, retype and drop fields on a copy."""
    mutated = descriptor_pb2.FileDescriptorProto()
    mutated.CopyFrom(ours["grpc_service.proto"])
    request = next(m for m in mutated.message_type if m.name == "ModelInferRequest")
    raw = next(f for f in request.field if f.name == "raw_input_contents")
    raw.number = 70
    request.field[0].type = FDP.TYPE_BYTES
    del request.field[1]
    diffs = compare_files(_theirs(triton_service_pb2), mutated)
    assert any("raw_input_contents: number is 70" in d for d in diffs), diffs
    assert any("model_name: type is 'TYPE_BYTES'" in d for d in diffs), diffs
    assert any("model_version: field missing" in d for d in diffs), diffs


def test_health_matches_grpc_health_v1(ours):
    # tritonclient does not ship grpc.health.v1, so the facts are written out here.
    health = ours["health.proto"]
    assert health.package == "grpc.health.v1"
    messages = {m.name: m for m in health.message_type}

    (service_field,) = messages["HealthCheckRequest"].field
    assert (service_field.name, service_field.number, service_field.type,
            service_field.label) == ("service", 1, FDP.TYPE_STRING, FDP.LABEL_OPTIONAL)

    response = messages["HealthCheckResponse"]
    (status_field,) = response.field
    assert (status_field.name, status_field.number, status_field.type) == (
        "status", 1, FDP.TYPE_ENUM)
    assert _type_name_suffix(status_field.type_name) == \
        "grpc.health.v1.HealthCheckResponse.ServingStatus"
    (serving_status,) = response.enum_type
    assert {v.name: v.number for v in serving_status.value} == {
        "UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3}

    (service,) = health.service
    assert service.name == "Health"
    check = next(m for m in service.method if m.name == "Check")
    assert _type_name_suffix(check.input_type) == "grpc.health.v1.HealthCheckRequest"
    assert _type_name_suffix(check.output_type) == "grpc.health.v1.HealthCheckResponse"
    assert not check.client_streaming and not check.server_streaming
