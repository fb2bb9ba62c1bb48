"""The inference floor: engines (torch, ONNX Runtime) behind one call, folder prediction (``predict``),
and whole scenes: planning (``scene_plan``), raster I/O (``scene_io``), the window loop (``mosaic``) and
many scenes (``scenes``). Built on the model floor; independent of training."""
