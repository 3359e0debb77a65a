"""A learned success classifier on camera frames: the reward source on a robot, where nothing
but a person (or this) can tell that an episode succeeded. Plain code, no ROS:

  dataset.py     frames + labels from zarr episode stores (by episode outcome), episode splits,
                 and a twin recorder whose successful episodes hold the success for a few steps
  classifier.py  the CNN, threshold picking, confusion tables, save/load, ONNX export + runner
  train.py       the training loop and its held-out report
  status.py      hysteresis over per-frame scores feeding the operator's EpisodeStatus
  commands.py    `robot-rl classifier train|record|eval`
The node is robot_rl/nodes/reward_classifier.py.
"""
