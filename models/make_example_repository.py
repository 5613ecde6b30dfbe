#!/usr/bin/python3
"""Build beamline's example model repository (Triton layout) and its reference data.

Run with Debian's interpreter, which has PyTorch:  /usr/bin/python3 models/make_example_repository.py

Writes, under --output (default models/repository):
  identity_fp32, identity_int64, identity_bool, identity_fp16   TorchScript x -> x.clone(), batched
  identity_bytes                                                TorchScript List[str] -> copy
  cnn_patch                                                     small CNN hit classifier, 48x48 patches
  cnn_patch_batched                                             the same CNN with dynamic batching
  emtrack_cnn, particlenet, particlenet_lite, exatrkx*          the physics workloads, trained weights
                                                                (export_workloads.py, models/weights)
and under --reference (default models/reference) .npy inputs and the outputs PyTorch computed for
them in this process, for the demo and the tests.

The build is deterministic (fixed seeds) and idempotent: a stamp file in each directory holds a hash
of this script, and when both stamps match and every file exists nothing is rebuilt (--force
rebuilds anyway).
"""

import argparse
import hashlib
import os
import pathlib
import sys
from typing import List

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import export_workloads  # noqa: E402  (the physics workloads: models/workloads, models/weights)

STAMP_NAME = ".make_example_repository.stamp"
SEED = 20261101
PATCH_SIZE = 48
REFERENCE_BATCH = 16


# --- models -----------------------------------------------------------------------------------------


class Identity(nn.Module):
    """Returns a copy of its input (a copy, so the output never aliases the request's memory)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class IdentityBytes(nn.Module):
    """Returns a copy of a list of byte strings (Triton TYPE_STRING / KServe BYTES)."""

    def forward(self, x: List[str]) -> List[str]:
        return [s for s in x]


class CnnPatch(nn.Module):
    """A ProtoDUNE-style hit classifier on 48x48 single-channel wire-time patches.

    Output per patch: 4 values, a 3-way softmax (EM shower, track, none) followed by the sigmoid
    score of a Michel electron. Weights come from a fixed seed; the network is untrained.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 24x24
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 12x12
            nn.Conv2d(32, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 6x6
        )
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(32 * 6 * 6, 64), nn.ReLU())
        self.hit_class = nn.Linear(64, 3)
        self.michel = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(self.features(x))
        return torch.cat([torch.softmax(self.hit_class(h), dim=1),
                          torch.sigmoid(self.michel(h))], dim=1)


# --- config.pbtxt -----------------------------------------------------------------------------------


def tensor_block(name: str, data_type: str, dims: List[int]) -> str:
    return (f'  {{\n    name: "{name}"\n    data_type: {data_type}\n'
            f'    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}')


def config_text(name: str, max_batch_size: int, data_type: str, input_dims: List[int],
                output_dims: List[int], extra: str = "") -> str:
    return (f'name: "{name}"\nplatform: "pytorch_libtorch"\nmax_batch_size: {max_batch_size}\n'
            f'input [\n{tensor_block("INPUT__0", data_type, input_dims)}\n]\n'
            f'output [\n{tensor_block("OUTPUT__0", data_type, output_dims)}\n]\n{extra}')


CNN_EXTRA = """instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
parameters {
  key: "INTRA_OP_THREAD_COUNT"
  value { string_value: "1" }
}
"""

# The same CNN behind the dynamic batcher: requests that arrive while the instance is busy are
# merged (up to 64 patches) into one execution. No queue delay: under load the batch fills while
# the previous one executes, and a lone request is never held back.
CNN_BATCHED_EXTRA = CNN_EXTRA + """dynamic_batching {
  max_queue_delay_microseconds: 0
}
"""

IDENTITY_TENSOR_MODELS = {  # model name -> config data type
    "identity_fp32": "TYPE_FP32",
    "identity_int64": "TYPE_INT64",
    "identity_bool": "TYPE_BOOL",
    "identity_fp16": "TYPE_FP16",
}


# --- build ------------------------------------------------------------------------------------------


def write_model(repository: pathlib.Path, name: str, config: str, module: torch.nn.Module) -> None:
    version_dir = repository / name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    (repository / name / "config.pbtxt").write_text(config)
    torch.jit.save(module, str(version_dir / "model.pt"))


def expected_files(repository: pathlib.Path, reference: pathlib.Path) -> List[pathlib.Path]:
    return (example_files(repository, reference) +
            export_workloads.expected_files(repository, reference))


def example_files(repository: pathlib.Path, reference: pathlib.Path) -> List[pathlib.Path]:
    names = list(IDENTITY_TENSOR_MODELS) + ["identity_bytes", "cnn_patch", "cnn_patch_batched"]
    files = [repository / n / f for n in names for f in ("config.pbtxt", "1/model.pt")]
    files += [reference / f for f in ("cnn_patch_input.npy", "cnn_patch_output.npy",
                                      "identity_fp32_input.npy", "identity_fp32_output.npy")]
    return files


def build(repository: pathlib.Path, reference: pathlib.Path) -> None:
    torch.manual_seed(SEED)
    repository.mkdir(parents=True, exist_ok=True)
    reference.mkdir(parents=True, exist_ok=True)

    identity = torch.jit.script(Identity().eval())
    for name, data_type in IDENTITY_TENSOR_MODELS.items():
        write_model(repository, name, config_text(name, 8, data_type, [-1], [-1]), identity)
    write_model(repository, "identity_bytes",
                config_text("identity_bytes", 0, "TYPE_STRING", [-1], [-1]),
                torch.jit.script(IdentityBytes().eval()))

    # Script (not trace, not optimize_for_inference: that one does not reload in C++; not freeze:
    # frozen weights become graph constants that Module::to(device) would leave on the CPU).
    cnn = torch.jit.script(CnnPatch().eval())
    write_model(repository, "cnn_patch",
                config_text("cnn_patch", 64, "TYPE_FP32", [1, PATCH_SIZE, PATCH_SIZE], [4],
                            CNN_EXTRA), cnn)
    write_model(repository, "cnn_patch_batched",
                config_text("cnn_patch_batched", 64, "TYPE_FP32", [1, PATCH_SIZE, PATCH_SIZE], [4],
                            CNN_BATCHED_EXTRA), cnn)

    generator = torch.Generator().manual_seed(SEED)
    patches = torch.rand(REFERENCE_BATCH, 1, PATCH_SIZE, PATCH_SIZE, generator=generator)
    with torch.no_grad():
        scores = cnn(patches)
    np.save(reference / "cnn_patch_input.npy", patches.numpy().astype(np.float32))
    np.save(reference / "cnn_patch_output.npy", scores.numpy().astype(np.float32))

    small = torch.randn(2, 5, generator=generator)  # batch 2 of 5 elements, dims [-1]
    np.save(reference / "identity_fp32_input.npy", small.numpy().astype(np.float32))
    np.save(reference / "identity_fp32_output.npy", identity(small).numpy().astype(np.float32))


def main() -> int:
    # TorchScript writes a module's constants in Python set order, which follows string hashing:
    # pin the hash seed so that the same script writes byte-identical model.pt files.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    here = pathlib.Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=pathlib.Path, default=here / "repository",
                        help="model repository to write (default: %(default)s)")
    parser.add_argument("--reference", type=pathlib.Path, default=here / "reference",
                        help="directory for the .npy reference data (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()

    script_hash = hashlib.sha256(pathlib.Path(__file__).read_bytes()).hexdigest()
    script_hash += " workloads " + export_workloads.source_hash()
    stamp = f"{script_hash} torch {torch.__version__}\n"
    stamps = [args.output / STAMP_NAME, args.reference / STAMP_NAME]
    up_to_date = (all(p.is_file() and p.read_text() == stamp for p in stamps)
                  and all(f.is_file() for f in expected_files(args.output, args.reference)))
    if up_to_date and not args.force:
        print(f"{args.output} and {args.reference} are up to date")
        return 0

    for p in stamps:  # a build that stops half-way must not look up to date
        p.unlink(missing_ok=True)
    build(args.output, args.reference)
    export_workloads.build(args.output, args.reference)
    for p in stamps:
        p.write_text(stamp)
    print(f"wrote {args.output} and {args.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
