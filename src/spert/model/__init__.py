"""The model stage: encoding (words to subwords), candidates (training samples and inference
spans), the network (encoder + heads), decoding, the model directory and ONNX export."""
