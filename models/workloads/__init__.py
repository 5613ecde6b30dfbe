"""beamline's reference physics workloads: toy simulations, the networks, and the reference algorithms.

  protodune_patches   toy 48x48 wire x time patches (EM shower / track / none, Michel electrons)
  toy_jets            toy jets of two classes (multiplicity and angular spread differ)
  barrel_detector     toy barrel tracker: helical tracks from the origin, noise hits
  nets                EmTrackCnn, ParticleNet / ParticleNet-Lite, Exa.TrkX embedding/filter/GNN
  tracking            reference FRNN and connected components (the semantics the C++/CUDA backends
                      implement), the Exa.TrkX pipeline in one process, efficiency and purity

Everything is deterministic from numpy / torch seeds, and runs with Debian's python3-torch (1.13).
"""
