#!/usr/bin/env python3
"""Dump the protobuf file descriptors shipped inside the PyPI package `cloudstate`.

The official Python support library (cloudstate==0.1.1) carries generated `*_pb2.py`
modules whose serialized descriptors are an authoritative record of the CloudState
protocol files it was built from. This script writes each of them, as a serialized
google.protobuf.FileDescriptorProto, to OUT_DIR/<proto path with '/' as '__'>.pb.
`tests/python_descriptors.rs` compares them with stead's own protocol files.

Usage (in a venv with `pip install --no-deps cloudstate==0.1.1 protobuf==4.25.3`):

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python python pydescriptors.py OUT_DIR
"""

import importlib
import pathlib
import pkgutil
import sys


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUT_DIR", file=sys.stderr)
        return 2
    out_dir = pathlib.Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)

    from google.protobuf import descriptor_pb2
    import cloudstate

    written = []
    for module_info in pkgutil.iter_modules(cloudstate.__path__):
        name = module_info.name
        if not name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"cloudstate.{name}")
        file_proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file_proto)
        target = out_dir / (file_proto.name.replace("/", "__") + ".pb")
        target.write_bytes(file_proto.SerializeToString())
        written.append(file_proto.name)

    if not written:
        print("no *_pb2 modules found in the cloudstate package", file=sys.stderr)
        return 1
    for name in sorted(written):
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
