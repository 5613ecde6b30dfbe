#!/usr/bin/python3
"""Train beamline's reference workloads on their toy simulations and store the weights.

Run with Debian's interpreter (it has PyTorch); a few CPU minutes per model on 2 cores:
  /usr/bin/python3 models/train_workloads.py [emtrack_cnn particlenet_lite particlenet exatrkx]

Writes models/weights/<model>.pt (state dicts, committed: CI never trains) and merges the held-out
metrics into models/weights/metrics.json; the Exa.TrkX pipeline's cuts go to
models/weights/exatrkx.json. Training data and held-out data come from disjoint seeds.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workloads import barrel_detector, nets, protodune_patches, toy_jets, tracking  # noqa: E402

WEIGHTS = HERE / "weights"
SEED = 20261106
# Seeds of the held-out samples; also used by the tests and the demos (never trained on).
HELD_OUT_SEED = {"emtrack_cnn": 9001, "particlenet": 9002, "exatrkx": 9003}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def merge_metrics(model: str, values: dict) -> None:
    """Read-modify-write under a lock: several trainings may run side by side."""
    WEIGHTS.mkdir(exist_ok=True)
    path = WEIGHTS / "metrics.json"
    with open(pathlib.Path(tempfile.gettempdir()) / "beamline_metrics.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics[model] = values
        path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def save_weights(model: str, module: nn.Module) -> None:
    WEIGHTS.mkdir(exist_ok=True)
    torch.save(module.state_dict(), WEIGHTS / f"{model}.pt")


# --- EmTrack CNN -----------------------------------------------------------------------------------


def train_emtrack_cnn(train_count: int = 16000, test_count: int = 4000, epochs: int = 4) -> None:
    torch.manual_seed(SEED)
    log("emtrack_cnn: simulating patches")
    x, y, michel = protodune_patches.simulate_patches(SEED, train_count)
    model = nets.EmTrackCnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = 128
    x_t, y_t, m_t = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(michel).float()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(train_count)
        total = 0.0
        for start in range(0, train_count, batch):
            index = order[start:start + batch]
            classes, michel_logit = model.logits(x_t[index])
            loss = (nn.functional.cross_entropy(classes, y_t[index]) +
                    nn.functional.binary_cross_entropy_with_logits(michel_logit.squeeze(1),
                                                                   m_t[index]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss) * len(index)
        log(f"emtrack_cnn: epoch {epoch} loss {total / train_count:.4f}")
    model.eval()
    xt, yt, mt = protodune_patches.simulate_patches(HELD_OUT_SEED["emtrack_cnn"], test_count)
    with torch.no_grad():
        probabilities, michel_score = model(torch.from_numpy(xt))
    predicted = probabilities.argmax(1).numpy()
    michel_predicted = (michel_score.squeeze(1).numpy() > 0.5).astype(np.int64)
    metrics = {
        "held_out_patches": test_count,
        "accuracy": float((predicted == yt).mean()),
        "accuracy_per_class": {name: float((predicted[yt == c] == c).mean())
                               for c, name in enumerate(protodune_patches.CLASS_NAMES)},
        "michel_accuracy_on_track_patches": float((michel_predicted[yt == 1] == mt[yt == 1]).mean()),
        "michel_efficiency": float(michel_predicted[mt == 1].mean()),
    }
    log(f"emtrack_cnn: {metrics}")
    save_weights("emtrack_cnn", model)
    merge_metrics("emtrack_cnn", metrics)


# --- ParticleNet -----------------------------------------------------------------------------------


def jet_batches(jets, labels, batch: int, order):
    for start in range(0, len(order), batch):
        index = order[start:start + batch]
        p, f, m = toy_jets.pad_jets([jets[i] for i in index])
        yield (torch.from_numpy(p), torch.from_numpy(f), torch.from_numpy(m),
               torch.from_numpy(labels[index]))


def train_particlenet(name: str, train_count: int, epochs: int, test_count: int = 4000,
                      lr: float = 3e-3) -> None:
    torch.manual_seed(SEED)
    jets, labels = toy_jets.simulate_jets(SEED + 1, train_count)
    model = (nets.particlenet if name == "particlenet" else nets.particlenet_lite)(
        toy_jets.NUM_FEATURES, toy_jets.NUM_CLASSES)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(train_count / 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    rng = np.random.default_rng(SEED)
    for epoch in range(epochs):
        model.train()
        # Random batches, each padded to its longest jet. Not sorted by length: BatchNorm's batch
        # statistics would then differ from batch to batch with the multiplicity, and the network
        # would learn from batch-relative inputs that its running statistics cannot reproduce.
        batches = list(jet_batches(jets, labels, 128, rng.permutation(train_count)))
        total, seen = 0.0, 0
        for p, f, m, y in batches:
            loss = nn.functional.cross_entropy(model.logits(p, f, m), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss) * len(y)
            seen += len(y)
        log(f"{name}: epoch {epoch} loss {total / seen:.4f}")
    model.eval()
    test_jets, test_labels = toy_jets.simulate_jets(HELD_OUT_SEED["particlenet"], test_count)
    correct = 0
    with torch.no_grad():
        for p, f, m, y in jet_batches(test_jets, test_labels, 256, np.arange(test_count)):
            correct += int((model(p, f, m).argmax(1) == y).sum())
    metrics = {"held_out_jets": test_count, "accuracy": correct / test_count,
               "training_jets": train_count, "epochs": epochs,
               "parameters": sum(p.numel() for p in model.parameters())}
    log(f"{name}: {metrics}")
    save_weights(name, model)
    merge_metrics(name, metrics)


# --- Exa.TrkX --------------------------------------------------------------------------------------


def brute_force_graph(embedding: torch.Tensor, radius: float, max_neighbours: int) -> torch.Tensor:
    """Training-time graph building (torch, approximate K selection): [2, E] with src < dst."""
    distances = torch.cdist(embedding, embedding)
    distances.fill_diagonal_(float("inf"))
    k = min(max_neighbours, embedding.shape[0] - 1)
    if k <= 0:
        return torch.zeros(2, 0, dtype=torch.long)
    values, indices = distances.topk(k, dim=1, largest=False)
    rows = torch.arange(embedding.shape[0]).unsqueeze(1).expand_as(indices)
    keep = values <= radius
    src, dst = rows[keep], indices[keep]
    pairs = torch.stack([torch.minimum(src, dst), torch.maximum(src, dst)])
    return torch.unique(pairs, dim=1)


def train_embedding(events, epochs: int = 6, margin: float = 1.0) -> nets.EmbeddingNet:
    model = nets.EmbeddingNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * len(events))
    rng = np.random.default_rng(SEED)
    for epoch in range(epochs):
        total = 0.0
        for index in rng.permutation(len(events)):
            event = events[index]
            x = torch.from_numpy(event.features)
            positives = torch.from_numpy(barrel_detector.consecutive_hit_pairs(event))
            embedding = model(x)
            with torch.no_grad():  # hard negatives: current neighbours that are not truth pairs
                hard = brute_force_graph(embedding, margin, 24)
            random_pairs = torch.from_numpy(rng.integers(0, event.num_hits, (2, 4 * event.num_hits)))
            pairs = torch.cat([hard, random_pairs], dim=1)
            truth = torch.from_numpy(barrel_detector.true_edge_mask(event, pairs.numpy()))
            negatives = pairs[:, ~truth & (pairs[0] != pairs[1])]
            d_pos = (embedding[positives[0]] - embedding[positives[1]]).pow(2).sum(1)
            d_neg = (embedding[negatives[0]] - embedding[negatives[1]]).pow(2).sum(1)
            loss = (2.0 * d_pos.mean() +
                    torch.relu(margin - torch.sqrt(d_neg + 1e-8)).pow(2).mean())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss)
        log(f"exatrkx embedding: epoch {epoch} loss {total / len(events):.4f}")
    return model.eval()


def candidate_graphs(embedding_model, events, radius, max_neighbours):
    graphs = []
    with torch.no_grad():
        for event in events:
            edges = brute_force_graph(embedding_model(torch.from_numpy(event.features)), radius,
                                      max_neighbours)
            truth = torch.from_numpy(barrel_detector.true_edge_mask(event, edges.numpy()))
            graphs.append((torch.from_numpy(event.features), edges, truth))
    return graphs


def train_edge_classifier(model, graphs, epochs: int, lr: float, name: str):
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * len(graphs))
    rng = np.random.default_rng(SEED)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for index in rng.permutation(len(graphs)):
            x, edges, truth = graphs[index]
            logits = model.logits(x, edges)
            positive_weight = (~truth).sum().clamp(min=1) / truth.sum().clamp(min=1)
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits, truth.float(), pos_weight=torch.sqrt(positive_weight.float()))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss)
        log(f"exatrkx {name}: epoch {epoch} loss {total / len(graphs):.4f}")
    return model.eval()


def edge_efficiency_purity(events, edge_lists) -> dict:
    """Efficiency: the fraction of the truth graph (consecutive hits of a particle) kept.
    Purity: the fraction of kept edges that join two hits of one particle."""
    same_particle, kept, truth_kept, truth_total = 0, 0, 0, 0
    for event, edges in zip(events, edge_lists):
        same_particle += int(barrel_detector.true_edge_mask(event, edges).sum())
        kept += edges.shape[1]
        truth = barrel_detector.consecutive_hit_pairs(event)
        keys = set((np.minimum(edges[0], edges[1]) * event.num_hits +
                    np.maximum(edges[0], edges[1])).tolist())
        truth_keys = np.minimum(truth[0], truth[1]) * event.num_hits + np.maximum(truth[0], truth[1])
        truth_kept += sum(1 for key in truth_keys.tolist() if key in keys)
        truth_total += truth.shape[1]
    return {"edges_per_event": kept / len(events), "efficiency": truth_kept / max(1, truth_total),
            "purity": same_particle / max(1, kept)}


def graph_statistics(graphs) -> str:
    edges = np.mean([int(e.shape[1]) for _, e, _ in graphs])
    purity = np.sum([int(t.sum()) for _, _, t in graphs]) / max(1, np.sum([int(e.shape[1]) for _, e, _ in graphs]))
    return f"{edges:.0f} edges per event, {purity:.3f} true"


def cached(name: str, reuse: bool, make):
    """Trains a stage, or with --reuse loads its stored weights (to iterate on later stages)."""
    path = WEIGHTS / f"{name}.pt"
    if reuse and path.exists():
        module = make(False)
        module.load_state_dict(torch.load(path))
        log(f"{name}: reusing {path}")
        return module.eval()
    module = make(True)
    save_weights(name, module)
    return module.eval()


def train_exatrkx(train_events: int = 120, validation_events: int = 30, test_events: int = 50,
                  max_neighbours: int = 64, reuse: tuple = ()) -> None:
    torch.manual_seed(SEED)
    config = barrel_detector.DetectorConfig()
    train = barrel_detector.simulate_events(SEED + 2, train_events, config)
    validation = barrel_detector.simulate_events(SEED + 3, validation_events, config)
    embedding = cached("exatrkx_embedding", "embedding" in reuse,
                       lambda train_: train_embedding(train) if train_ else nets.EmbeddingNet())

    # Radius: keep 99.5% of the consecutive-hit pairs of the validation events.
    with torch.no_grad():
        distances = []
        for event in validation:
            e = embedding(torch.from_numpy(event.features))
            pairs = torch.from_numpy(barrel_detector.consecutive_hit_pairs(event))
            distances.append((e[pairs[0]] - e[pairs[1]]).norm(dim=1).numpy())
    radius = float(np.round(np.quantile(np.concatenate(distances), 0.995) * 1.05, 3))
    log(f"exatrkx: FRNN radius {radius}")

    train_graphs = candidate_graphs(embedding, train, radius, max_neighbours)
    validation_graphs = candidate_graphs(embedding, validation, radius, max_neighbours)
    log(f"exatrkx: candidate graphs: {graph_statistics(validation_graphs)}")
    filter_net = cached("exatrkx_filter", "filter" in reuse,
                        lambda train_: train_edge_classifier(nets.FilterNet(), train_graphs, epochs=6,
                                                             lr=2e-3, name="filter")
                        if train_ else nets.FilterNet())
    # Filter cut: keep 99.5% of the true edges of the validation graphs.
    with torch.no_grad():
        true_scores = np.concatenate([
            torch.sigmoid(filter_net.logits(x, e))[t].numpy() for x, e, t in validation_graphs])
    filter_cut = float(np.round(min(0.5, np.quantile(true_scores, 0.005)), 3))
    filter_net.cut = filter_cut
    log(f"exatrkx: filter cut {filter_cut}")

    def filtered(graphs):
        out = []
        with torch.no_grad():
            for x, edges, truth in graphs:
                keep = torch.sigmoid(filter_net.logits(x, edges)) > filter_cut
                out.append((x, edges[:, keep], truth[keep]))
        return out

    validation_filtered = filtered(validation_graphs)
    log(f"exatrkx: filtered graphs: {graph_statistics(validation_filtered)}")
    gnn = cached("exatrkx_gnn", "gnn" in reuse,
                 lambda train_: train_edge_classifier(nets.InteractionGnn(), filtered(train_graphs),
                                                      epochs=10, lr=2e-3, name="gnn")
                 if train_ else nets.InteractionGnn())

    # Threshold of the track building: the best validation efficiency x purity.
    with torch.no_grad():
        validation_scores = [gnn(x, e).numpy() for x, e, _ in validation_filtered]
    best = (0.0, 0.5)
    for threshold in np.arange(0.3, 0.96, 0.05):
        total = tracking.TrackingMetrics()
        for event, (_, edges, _), scores in zip(validation, validation_filtered, validation_scores):
            labels = tracking.connected_components_reference(event.num_hits, edges.numpy(), scores,
                                                             float(threshold))
            total.add(tracking.tracking_metrics(event, labels))
        log(f"exatrkx: threshold {threshold:.2f}: efficiency {total.efficiency:.4f} "
            f"purity {total.purity:.4f}")
        if total.efficiency * total.purity > best[0]:
            best = (total.efficiency * total.purity, float(np.round(threshold, 2)))
    threshold = best[1]

    parameters = tracking.PipelineParameters(radius, max_neighbours, threshold)
    WEIGHTS.mkdir(exist_ok=True)
    (WEIGHTS / "exatrkx.json").write_text(json.dumps(
        {"radius": radius, "max_neighbours": max_neighbours, "filter_cut": filter_cut,
         "threshold": threshold}, indent=2) + "\n")

    # Held-out events through the exact pipeline (reference FRNN and connected components).
    test = barrel_detector.simulate_events(HELD_OUT_SEED["exatrkx"], test_events, config)
    total = tracking.TrackingMetrics()
    stages = {"frnn": [], "filter": [], "gnn": []}
    for event in test:
        out = tracking.run_pipeline((embedding, filter_net, gnn), event.features, parameters,
                                    keep_intermediate=True)
        total.add(tracking.tracking_metrics(event, out["labels"]))
        stages["frnn"].append(out["candidate_edges"])
        stages["filter"].append(out["filtered_edges"])
        stages["gnn"].append(out["filtered_edges"][:, out["edge_scores"] > threshold])
    metrics = {"held_out_events": test_events,
               "mean_spacepoints": float(np.mean([e.num_hits for e in test])),
               "tracking_efficiency": total.efficiency, "tracking_purity": total.purity,
               "reconstructable_particles": total.reconstructable,
               "edges": {stage: edge_efficiency_purity(test, lists)
                         for stage, lists in stages.items()},
               "radius": radius, "max_neighbours": max_neighbours, "filter_cut": filter_cut,
               "threshold": threshold}
    log(f"exatrkx: {json.dumps(metrics, indent=1)}")
    merge_metrics("exatrkx", metrics)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("models", nargs="*",
                        default=["emtrack_cnn", "particlenet_lite", "particlenet", "exatrkx"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", nargs="*", default=[], choices=["embedding", "filter", "gnn"],
                        help="Exa.TrkX stages to load from models/weights instead of training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for model in args.models:
        start = time.time()
        if model == "emtrack_cnn":
            train_emtrack_cnn()
        elif model == "particlenet_lite":
            train_particlenet("particlenet_lite", train_count=16000, epochs=5)
        elif model == "particlenet":
            train_particlenet("particlenet", train_count=16000, epochs=5, lr=2e-3)
        elif model == "exatrkx":
            train_exatrkx(reuse=tuple(args.reuse))
        else:
            parser.error(f"unknown model {model}")
        log(f"{model}: trained in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
