"""Exports of faceage's networks for other runtimes (ONNX), each checked against PyTorch."""
