"""Front ends that read networks written for other frameworks (PyTorch, ONNX) into compiler IR and readable .net."""
