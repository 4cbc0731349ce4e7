"""The model stage: words to subwords (:mod:`.encoding`), candidate spans and training samples
(:mod:`.candidates`), the network, encoder + heads (:mod:`.modeling`), decoding
(:mod:`.decoding`), the stored calibration and how it applies (:mod:`.calibration`), the model
directory (:mod:`.directory`) and ONNX export and runtime (:mod:`.onnx`)."""
