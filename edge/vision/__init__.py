"""Face vision: detection with five landmarks, alignment, embedding, quality gate.

The only part of the code base that knows about ONNX tensors. Public contract used by the
hub, the daemon and the benchmarks:

    pipe = Pipeline.load(models_dir=None, precision="int8", threads=None)
    pipe.fingerprint            # embedder pack fingerprint; never compare across fingerprints
    pipe.detect(bgr)            # list[Face], largest first, embedding None
    pipe.embed(bgr, face)       # unit float32 vector, also stored on face.embedding
    pipe.analyze(bgr)           # detect + embed every face
    decode_image(data: bytes)   # BGR uint8 or ApiError(-1300 / -1102 / -1400)
"""
