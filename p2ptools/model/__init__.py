"""The model floor: the networks (``nets``), checkpoints that rebuild them, generators of the official
pix2pix code (``official``, ``import_run``), ONNX export, and tensor conversions shared by training and
inference. It reads configurations and data contracts; it never trains or predicts."""
