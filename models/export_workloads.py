#!/usr/bin/python3
"""Export beamline's reference physics workloads into a model repository, with reference data.

Called by make_example_repository.py (which owns the stamp and the command line of the example
repository); it also runs on its own, e.g. for a repository whose instances run on a GPU:
  /usr/bin/python3 models/export_workloads.py --output DIR --reference DIR [--instance-kind gpu]

Models (weights from models/weights, trained by train_workloads.py):
  emtrack_cnn             patch [1,48,48] -> em_trk_none__0 [3] (softmax), michel__1 [1] (sigmoid)
  particlenet             points [2,-1], features [7,-1], mask [1,-1] -> softmax__0 [2]
  particlenet_lite        the same inputs, ParticleNet-Lite
  exatrkx_embedding       features [-1,3] -> EMBEDDING__0 [-1,8]                       (pytorch)
  exatrkx_frnn            EMBEDDING [-1,8] -> EDGES [2,-1]                              (frnn)
  exatrkx_filter          features [-1,3], edges [2,-1] -> EDGES__0 [2,-1], SCORES__1 [-1] (pytorch)
  exatrkx_gnn             features [-1,3], edges [2,-1] -> SCORES__0 [-1]               (pytorch)
  exatrkx_track_building  EDGES, SCORES, NODES -> LABELS [-1]                  (connected_components)
  exatrkx                 the ensemble of the five: FEATURES [-1,3] -> LABELS [-1]
  exatrkx_fused           the whole pipeline in one backend call (exatrkx backend)
Reference data (.npy) are held-out samples of the toy simulations and the outputs this process
computed for them (see reference_files()).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import shutil
import sys
from typing import Dict, List

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workloads import barrel_detector, nets, protodune_patches, toy_jets, tracking  # noqa: E402

WEIGHTS = HERE / "weights"
# Held-out samples (the seeds train_workloads.py keeps for evaluation, shifted so that the
# reference data are yet other events).
CNN_SEED, JET_SEED, TRACKING_SEED = 19001, 19002, 19003
CNN_REFERENCE_PATCHES = 32
JET_REFERENCE_JETS = 16
TRACKING_REFERENCE_EVENTS = 16

PYTORCH_MODELS = ["emtrack_cnn", "particlenet", "particlenet_lite", "exatrkx_embedding",
                  "exatrkx_filter", "exatrkx_gnn"]
ALL_MODELS = PYTORCH_MODELS + ["exatrkx_frnn", "exatrkx_track_building", "exatrkx",
                               "exatrkx_fused"]


def source_files() -> List[pathlib.Path]:
    """Everything the export depends on, for make_example_repository.py's stamp."""
    files = [pathlib.Path(__file__).resolve()]
    files += sorted((HERE / "workloads").glob("*.py"))
    files += sorted(WEIGHTS.glob("*.pt")) + sorted(WEIGHTS.glob("*.json"))
    return files


def source_hash() -> str:
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def reference_files() -> List[str]:
    files = ["emtrack_cnn_patch.npy", "emtrack_cnn_em_trk_none.npy", "emtrack_cnn_michel.npy",
             "emtrack_cnn_truth.npy", "particlenet_points.npy", "particlenet_features.npy",
             "particlenet_mask.npy", "particlenet_truth.npy", "particlenet_softmax.npy",
             "particlenet_lite_softmax.npy", "exatrkx_parameters.json"]
    for i in range(TRACKING_REFERENCE_EVENTS):
        files += [f"exatrkx_event{i}_{name}.npy" for name in ("features", "particle_id", "labels")]
    files += [f"exatrkx_event0_{name}.npy" for name in
              ("embedding", "candidate_edges", "filtered_edges", "filter_scores", "edge_scores")]
    return files


def expected_files(repository: pathlib.Path, reference: pathlib.Path) -> List[pathlib.Path]:
    files = [repository / name / "config.pbtxt" for name in ALL_MODELS]
    files += [repository / name / "1" / "model.pt" for name in PYTORCH_MODELS]
    files += [repository / "exatrkx_fused" / "1" / f for f in ("embedding.pt", "filter.pt", "gnn.pt")]
    files += [reference / f for f in reference_files()]
    return files


# --- config.pbtxt -----------------------------------------------------------------------------------


def tensor(name: str, data_type: str, dims: List[int]) -> str:
    return (f'  {{\n    name: "{name}"\n    data_type: {data_type}\n'
            f'    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}')


def tensors(kind: str, entries: List[tuple]) -> str:
    return f"{kind} [\n" + ",\n".join(tensor(*entry) for entry in entries) + "\n]\n"


def instances(kind: str, count: int = 1) -> str:
    return f"instance_group [\n  {{\n    count: {count}\n    kind: {kind}\n  }}\n]\n"


def parameters(values: Dict[str, object]) -> str:
    return "".join(f'parameters {{\n  key: "{key}"\n  value {{ string_value: "{value}" }}\n}}\n'
                   for key, value in values.items())


def header(name: str, max_batch_size: int, platform: str = "", backend: str = "") -> str:
    text = f'name: "{name}"\n'
    text += f'platform: "{platform}"\n' if platform else f'backend: "{backend}"\n'
    return text + f"max_batch_size: {max_batch_size}\n"


def ensemble_step(model: str, inputs: Dict[str, str], outputs: Dict[str, str]) -> str:
    def mapping(kind: str, pairs: Dict[str, str]) -> str:
        return "".join(f'      {kind} {{\n        key: "{key}"\n        value: "{value}"\n      }}\n'
                       for key, value in pairs.items())
    return (f'    {{\n      model_name: "{model}"\n      model_version: -1\n'
            f'{mapping("input_map", inputs)}{mapping("output_map", outputs)}    }}')


def exatrkx_ensemble_config() -> str:
    """embed -> frnn -> filter -> gnn -> connected components. Keys of input_map/output_map are the
    step model's tensor names, values the ensemble's tensor names."""
    steps = [
        ensemble_step("exatrkx_embedding", {"features": "FEATURES"},
                      {"EMBEDDING__0": "embedding"}),
        ensemble_step("exatrkx_frnn", {"EMBEDDING": "embedding"}, {"EDGES": "candidate_edges"}),
        ensemble_step("exatrkx_filter", {"features": "FEATURES", "edges": "candidate_edges"},
                      {"EDGES__0": "filtered_edges"}),
        ensemble_step("exatrkx_gnn", {"features": "FEATURES", "edges": "filtered_edges"},
                      {"SCORES__0": "edge_scores"}),
        ensemble_step("exatrkx_track_building",
                      {"EDGES": "filtered_edges", "SCORES": "edge_scores", "NODES": "FEATURES"},
                      {"LABELS": "LABELS"}),
    ]
    return ('name: "exatrkx"\nplatform: "ensemble"\nmax_batch_size: 0\n' +
            tensors("input", [("FEATURES", "TYPE_FP32", [-1, 3])]) +
            tensors("output", [("LABELS", "TYPE_INT64", [-1])]) +
            "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n")


def configs(kind: str, pipeline: Dict[str, float]) -> Dict[str, str]:
    one_thread = parameters({"INTRA_OP_THREAD_COUNT": 1})
    batching = "dynamic_batching {\n  max_queue_delay_microseconds: 0\n}\n"
    jet_inputs = [("points", "TYPE_FP32", [2, -1]),
                  ("features", "TYPE_FP32", [toy_jets.NUM_FEATURES, -1]),
                  ("mask", "TYPE_FP32", [1, -1])]
    frnn = {"radius": pipeline["radius"], "max_neighbours": pipeline["max_neighbours"]}
    return {
        "emtrack_cnn": header("emtrack_cnn", 1024, platform="pytorch_libtorch") +
        tensors("input", [("patch", "TYPE_FP32", [1, 48, 48])]) +
        tensors("output", [("em_trk_none__0", "TYPE_FP32", [3]), ("michel__1", "TYPE_FP32", [1])])
        + instances(kind) + one_thread + batching,
        "particlenet": header("particlenet", 256, platform="pytorch_libtorch") +
        tensors("input", jet_inputs) +
        tensors("output", [("softmax__0", "TYPE_FP32", [toy_jets.NUM_CLASSES])]) +
        instances(kind) + one_thread + batching,
        "particlenet_lite": header("particlenet_lite", 256, platform="pytorch_libtorch") +
        tensors("input", jet_inputs) +
        tensors("output", [("softmax__0", "TYPE_FP32", [toy_jets.NUM_CLASSES])]) +
        instances(kind) + one_thread + batching,
        "exatrkx_embedding": header("exatrkx_embedding", 0, platform="pytorch_libtorch") +
        tensors("input", [("features", "TYPE_FP32", [-1, 3])]) +
        tensors("output", [("EMBEDDING__0", "TYPE_FP32", [-1, 8])]) + instances(kind) + one_thread,
        "exatrkx_frnn": header("exatrkx_frnn", 0, backend="frnn") +
        tensors("input", [("EMBEDDING", "TYPE_FP32", [-1, 8])]) +
        tensors("output", [("EDGES", "TYPE_INT64", [2, -1])]) + instances(kind) + parameters(frnn),
        "exatrkx_filter": header("exatrkx_filter", 0, platform="pytorch_libtorch") +
        tensors("input", [("features", "TYPE_FP32", [-1, 3]), ("edges", "TYPE_INT64", [2, -1])]) +
        tensors("output", [("EDGES__0", "TYPE_INT64", [2, -1]), ("SCORES__1", "TYPE_FP32", [-1])])
        + instances(kind) + one_thread,
        "exatrkx_gnn": header("exatrkx_gnn", 0, platform="pytorch_libtorch") +
        tensors("input", [("features", "TYPE_FP32", [-1, 3]), ("edges", "TYPE_INT64", [2, -1])]) +
        tensors("output", [("SCORES__0", "TYPE_FP32", [-1])]) + instances(kind) + one_thread,
        "exatrkx_track_building": header("exatrkx_track_building", 0,
                                         backend="connected_components") +
        tensors("input", [("EDGES", "TYPE_INT64", [2, -1]), ("SCORES", "TYPE_FP32", [-1]),
                          ("NODES", "TYPE_FP32", [-1, 3])]) +
        tensors("output", [("LABELS", "TYPE_INT64", [-1])]) + instances(kind) +
        parameters({"threshold": pipeline["threshold"]}),
        "exatrkx": exatrkx_ensemble_config(),
        "exatrkx_fused": header("exatrkx_fused", 0, backend="exatrkx") +
        tensors("input", [("FEATURES", "TYPE_FP32", [-1, 3])]) +
        tensors("output", [("LABELS", "TYPE_INT64", [-1])]) + instances(kind) +
        parameters({**frnn, "threshold": pipeline["threshold"], "INTRA_OP_THREAD_COUNT": 1}),
    }


# --- networks ----------------------------------------------------------------------------------------


def load(module: torch.nn.Module, name: str) -> torch.nn.Module:
    module.load_state_dict(torch.load(WEIGHTS / f"{name}.pt", map_location="cpu"))
    return module.eval()


def scripted_networks(pipeline: Dict[str, float]) -> Dict[str, torch.jit.ScriptModule]:
    # Script (not trace: shapes vary; not optimize_for_inference: it does not reload in C++).
    filter_net = load(nets.FilterNet(), "exatrkx_filter")
    filter_net.cut = float(pipeline["filter_cut"])
    modules = {
        "emtrack_cnn": load(nets.EmTrackCnn(), "emtrack_cnn"),
        "particlenet": load(nets.particlenet(toy_jets.NUM_FEATURES, toy_jets.NUM_CLASSES),
                            "particlenet"),
        "particlenet_lite": load(nets.particlenet_lite(toy_jets.NUM_FEATURES,
                                                       toy_jets.NUM_CLASSES), "particlenet_lite"),
        "exatrkx_embedding": load(nets.EmbeddingNet(), "exatrkx_embedding"),
        "exatrkx_filter": filter_net,
        "exatrkx_gnn": load(nets.InteractionGnn(), "exatrkx_gnn"),
    }
    return {name: torch.jit.script(module) for name, module in modules.items()}


# --- build ---------------------------------------------------------------------------------------------


def write_references(reference: pathlib.Path, networks: Dict[str, torch.jit.ScriptModule],
                     pipeline: Dict[str, float]) -> None:
    def save(name: str, array: np.ndarray) -> None:
        np.save(reference / name, array)

    with torch.no_grad():
        patches, truth, _ = protodune_patches.simulate_patches(CNN_SEED, CNN_REFERENCE_PATCHES)
        classes, michel = networks["emtrack_cnn"](torch.from_numpy(patches))
        save("emtrack_cnn_patch.npy", patches)
        save("emtrack_cnn_em_trk_none.npy", classes.numpy())
        save("emtrack_cnn_michel.npy", michel.numpy())
        save("emtrack_cnn_truth.npy", truth)

        jets, jet_truth = toy_jets.simulate_jets(JET_SEED, JET_REFERENCE_JETS)
        points, features, mask = toy_jets.pad_jets(jets)
        save("particlenet_points.npy", points)
        save("particlenet_features.npy", features)
        save("particlenet_mask.npy", mask)
        save("particlenet_truth.npy", jet_truth)
        for name in ("particlenet", "particlenet_lite"):
            save(f"{name}_softmax.npy", networks[name](
                torch.from_numpy(points), torch.from_numpy(features), torch.from_numpy(mask)
            ).numpy())

    parameters = tracking.PipelineParameters(pipeline["radius"], int(pipeline["max_neighbours"]),
                                             pipeline["threshold"])
    modules = (networks["exatrkx_embedding"], networks["exatrkx_filter"], networks["exatrkx_gnn"])
    events = barrel_detector.simulate_events(TRACKING_SEED, TRACKING_REFERENCE_EVENTS)
    for i, event in enumerate(events):
        out = tracking.run_pipeline(modules, event.features, parameters, keep_intermediate=True)
        save(f"exatrkx_event{i}_features.npy", event.features)
        save(f"exatrkx_event{i}_particle_id.npy", event.particle_id)
        save(f"exatrkx_event{i}_labels.npy", out["labels"])
        if i == 0:
            for name in ("embedding", "candidate_edges", "filtered_edges", "filter_scores",
                         "edge_scores"):
                save(f"exatrkx_event0_{name}.npy", out[name])
    (reference / "exatrkx_parameters.json").write_text(json.dumps(pipeline, indent=2) + "\n")


def build(repository: pathlib.Path, reference: pathlib.Path, instance_kind: str = "KIND_CPU"
          ) -> None:
    torch.manual_seed(0)
    repository.mkdir(parents=True, exist_ok=True)
    reference.mkdir(parents=True, exist_ok=True)
    pipeline = json.loads((WEIGHTS / "exatrkx.json").read_text())
    networks = scripted_networks(pipeline)
    for name, text in configs(instance_kind, pipeline).items():
        (repository / name).mkdir(exist_ok=True)
        (repository / name / "config.pbtxt").write_text(text)
        (repository / name / "1").mkdir(exist_ok=True)
    for name, module in networks.items():
        torch.jit.save(module, str(repository / name / "1" / "model.pt"))
    fused = repository / "exatrkx_fused" / "1"
    for part, name in (("embedding", "exatrkx_embedding"), ("filter", "exatrkx_filter"),
                       ("gnn", "exatrkx_gnn")):
        shutil.copyfile(repository / name / "1" / "model.pt", fused / f"{part}.pt")
    write_references(reference, networks, pipeline)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=pathlib.Path, required=True)
    parser.add_argument("--reference", type=pathlib.Path, required=True)
    parser.add_argument("--instance-kind", choices=["cpu", "gpu"], default="cpu")
    args = parser.parse_args()
    build(args.output, args.reference, "KIND_GPU" if args.instance_kind == "gpu" else "KIND_CPU")
    print(f"wrote the workloads to {args.output} and {args.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
