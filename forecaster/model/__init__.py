"""The network and everything around it: the one transform (scaling), the networks (tensor math
only), fitting (one process or DDP), calibration, the self-describing artifact, and the
predictor that turns price windows into price quantiles (one window or a whole frame)."""
