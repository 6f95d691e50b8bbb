"""Compile protos/istio/v1/auth/ca.proto into OUT_DIR/ca_pb2.py and ca_pb2.pyi with the
pinned grpcio-tools (`make protos`; the unit tier checks the checked-in copy is current).

    python hack/protogen.py OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "istio/v1/auth/ca.proto"


def generate(out_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
        status = protoc.main(["protoc", f"-I{ROOT / 'protos'}", f"-I{well_known}",
                              f"--python_out={work}",
                              f"--pyi_out={work}", str(ROOT / "protos" / SOURCE)])
        if status != 0:
            raise SystemExit(f"protoc failed on {SOURCE} ({status})")
        generated = Path(work) / Path(SOURCE).parent
        for name in ("ca_pb2.py", "ca_pb2.pyi"):
            shutil.copyfile(generated / name, out_dir / name)


if __name__ == "__main__":
    generate(Path(sys.argv[1]))
